"""Authentication (password flow, tokens, API keys) and roles."""

from __future__ import annotations

import jwt
import pytest

from api.settings import ApiSettings
from tests.api.conftest import SECRET, Api, assert_problem, bearer, lamp_body

TOKEN_HINT = "log in again at /api/v1/auth/token"


def test_login_gives_a_token_that_identifies_the_council_and_role(api: Api) -> None:
    response = api.login("north-engineer")
    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 3600
    assert token["expires_ns"] == api.clock() + 3600 * 10**9
    me = api.client.get("/api/v1/auth/me", headers=bearer(response)).json()
    assert me == {
        "council_id": "north",
        "council_name": "North Council",
        "role": "engineer",
        "actor": "user:north-engineer",
    }


def test_wrong_password_and_unknown_user_get_the_same_answer(api: Api) -> None:
    wrong = api.login("north-engineer", "not the password")
    unknown = api.login("nobody-here", "not the password")
    for response in (wrong, unknown):
        assert_problem(response, 401, "wrong username or password")
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_token_expires_on_the_service_clock(api: Api) -> None:
    headers = api.north.viewer
    api.clock.advance(3599)
    assert api.client.get("/api/v1/lamps", headers=headers).status_code == 200
    api.clock.advance(1)
    assert_problem(
        api.client.get("/api/v1/lamps", headers=headers),
        401,
        f"the access token has expired; {TOKEN_HINT}",
    )


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        jwt.encode(
            {"sub": "1", "council": "north", "iat": 0, "exp": 2**40, "typ": "access"},
            "other-key-0123456789abcdefghijklmnop",
            algorithm="HS256",
        ),
        jwt.encode(
            {"sub": "1", "council": "north", "iat": 0, "exp": 2**40, "typ": "access"},
            "",
            algorithm="none",
        ),
    ],
    ids=["garbage", "three-parts", "foreign-signature", "unsigned"],
)
def test_garbage_and_forged_tokens_are_refused(api: Api, token: str) -> None:
    response = api.client.get("/api/v1/lamps", headers={"Authorization": f"Bearer {token}"})
    assert_problem(
        response,
        401,
        f"the access token is not valid (malformed, or not signed by this service); {TOKEN_HINT}",
    )


def test_token_claiming_another_council_is_refused(api: Api) -> None:
    # Correctly signed, but the user (north's admin, id 1) does not belong to "south".
    forged = jwt.encode(
        {"sub": "1", "council": "south", "iat": 0, "exp": 2**40, "typ": "access"},
        SECRET,
        algorithm="HS256",
    )
    assert_problem(
        api.client.get("/api/v1/lamps", headers={"Authorization": f"Bearer {forged}"}),
        401,
        "the access token's user no longer exists or is disabled; log in again",
    )


def test_api_key_authenticates_as_its_council_and_role(api: Api) -> None:
    me = api.client.get("/api/v1/auth/me", headers=api.north.key_headers).json()
    assert me["council_id"] == "north"
    assert me["role"] == "engineer"
    assert me["actor"] == "api-key:north-ingest"
    created = api.client.post("/api/v1/lamps", json=lamp_body("K1"), headers=api.north.key_headers)
    assert created.status_code == 201
    entry = api.client.get(
        "/api/v1/audit", params={"action": "lamp.create"}, headers=api.north.viewer
    ).json()["items"][0]
    assert entry["actor"] == "api-key:north-ingest"


def test_api_key_is_shown_once_stored_hashed_and_can_be_revoked(api: Api) -> None:
    created = api.client.post(
        "/api/v1/api-keys", json={"name": "cabinet-7", "role": "viewer"}, headers=api.north.admin
    ).json()
    key = created["key"]
    assert key.startswith("sl_") and created["prefix"] == key[:10]
    listed = api.client.get("/api/v1/api-keys", headers=api.north.admin).json()
    assert listed["total"] == 2
    assert all("key" not in item for item in listed["items"])
    with api.app.state.ctx.engine.connect() as conn:
        stored = [row[0] for row in conn.exec_driver_sql("SELECT key_hash FROM api_keys")]
    assert key not in stored and all(len(h) == 64 for h in stored)
    assert api.client.get("/api/v1/lamps", headers={"X-API-Key": key}).status_code == 200
    revoked = api.client.delete(f"/api/v1/api-keys/{created['id']}", headers=api.north.admin)
    assert revoked.status_code == 204
    assert_problem(
        api.client.get("/api/v1/lamps", headers={"X-API-Key": key}),
        401,
        "the API key is not valid (unknown or revoked)",
    )


def test_no_credentials(api: Api) -> None:
    assert_problem(
        api.client.get("/api/v1/lamps"),
        401,
        "authentication required: send 'Authorization: Bearer <token>' (from "
        "/api/v1/auth/token) or an 'X-API-Key' header",
    )


def test_health_is_open(api: Api) -> None:
    response = api.client.get("/api/v1/health")
    assert response.json() == {"status": "ok", "time_ns": api.clock()}


def test_viewer_cannot_write(api: Api) -> None:
    assert_problem(
        api.client.post("/api/v1/lamps", json=lamp_body("V1"), headers=api.north.viewer),
        403,
        "this operation needs the engineer role; you have viewer",
    )
    assert api.client.get("/api/v1/lamps", headers=api.north.viewer).json()["total"] == 0


def test_engineer_cannot_manage_users_or_keys(api: Api) -> None:
    detail = "this operation needs the admin role; you have engineer"
    body = {"username": "mallory", "password": "a long password", "role": "admin"}
    assert_problem(
        api.client.post("/api/v1/users", json=body, headers=api.north.engineer), 403, detail
    )
    assert_problem(api.client.get("/api/v1/api-keys", headers=api.north.engineer), 403, detail)
    assert api.login("mallory", "a long password").status_code == 401


def test_deleted_user_loses_access_at_once(api: Api) -> None:
    users = api.client.get("/api/v1/users", headers=api.north.admin).json()["items"]
    viewer = next(u for u in users if u["username"] == "north-viewer")
    assert (
        api.client.delete(f"/api/v1/users/{viewer['id']}", headers=api.north.admin).status_code
        == 204
    )
    assert_problem(
        api.client.get("/api/v1/lamps", headers=api.north.viewer),
        401,
        "the access token's user no longer exists or is disabled; log in again",
    )


def test_admin_changes_role_and_cannot_demote_self(api: Api) -> None:
    users = {
        u["username"]: u
        for u in api.client.get("/api/v1/users", headers=api.north.admin).json()["items"]
    }
    promoted = api.client.patch(
        f"/api/v1/users/{users['north-viewer']['id']}",
        json={"role": "engineer"},
        headers=api.north.admin,
    )
    assert promoted.json()["role"] == "engineer"
    assert (
        api.client.post("/api/v1/lamps", json=lamp_body("P1"), headers=api.north.viewer).status_code
        == 201
    )
    assert_problem(
        api.client.patch(
            f"/api/v1/users/{users['north-admin']['id']}",
            json={"role": "viewer"},
            headers=api.north.admin,
        ),
        409,
        "you cannot demote or disable yourself; ask another admin",
    )


def test_usernames_are_unique_across_councils(api: Api) -> None:
    body = {"username": "north-viewer", "password": "a long password", "role": "viewer"}
    assert_problem(
        api.client.post("/api/v1/users", json=body, headers=api.south.admin),
        409,
        "this username is taken; usernames are unique across the service",
    )


def test_default_secret_is_refused_outside_development() -> None:
    with pytest.raises(
        ValueError,
        match="secret_key is the development default, which is refused in the production environment",
    ):
        ApiSettings(environment="production")
    with pytest.raises(
        ValueError, match="secret_key has 5 characters; use at least 32 random ones"
    ):
        ApiSettings(environment="production", secret_key="short")
    assert ApiSettings(environment="development").environment == "development"


def test_admin_sets_the_council_time_zone(api: Api) -> None:
    assert_problem(
        api.client.patch("/api/v1/council", json={"tz": "Europe/Lonodn"}, headers=api.north.admin),
        422,
        "the time zone is not known",
        [
            {
                "where": "body.tz",
                "message": "'Europe/Lonodn' is not an IANA time zone; write e.g. Europe/London",
            }
        ],
    )
    assert_problem(
        api.client.patch(
            "/api/v1/council", json={"tz": "Europe/Dublin"}, headers=api.north.engineer
        ),
        403,
        "this operation needs the admin role; you have engineer",
    )
    changed = api.client.patch(
        "/api/v1/council", json={"tz": "Europe/Dublin"}, headers=api.north.admin
    )
    assert changed.json() == {"id": "north", "name": "North Council", "tz": "Europe/Dublin"}
    assert (
        api.client.get("/api/v1/council", headers=api.south.viewer).json()["tz"] == "Europe/London"
    )


def test_user_and_key_management_is_audited(api: Api) -> None:
    audit = api.client.get("/api/v1/audit", headers=api.north.viewer).json()["items"]
    assert [(e["action"], e["target"], e["actor"]) for e in reversed(audit)] == [
        ("council.create", "council:north", "system:seed"),
        ("user.create", "user:north-engineer", "user:north-admin"),
        ("user.create", "user:north-viewer", "user:north-admin"),
        ("api_key.create", "api_key:1", "user:north-admin"),
    ]
    assert all("password" not in str(e["detail"]) for e in audit)
