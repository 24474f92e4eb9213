"""No council can reach another's objects: every operation of the OpenAPI document is called
with one council's credentials against the other's ids, and without credentials.

Council north owns one object of every kind, each named with "north" in it; south then calls
every operation (path x method) with north's ids in the path, north's ids in every body or
query field that refers to an object, and valid values elsewhere (built from the operation's
own schema, so new operations are covered without editing this test). Every operation that
addresses one of north's objects must answer 401, 403 or 404, no answer may contain "north",
and north's data must be unchanged afterwards.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from api.db import DryRun, JobStatus, PolicyVersion, record_alarm, record_gateway_status
from tests.api.conftest import Api, assert_problem, make_group, policy_text

OPEN_OPERATIONS = {("post", "/api/v1/auth/token"), ("get", "/api/v1/health")}


def _seed_north(api: Api) -> dict[str, Any]:
    """One object of every kind in north; returns the values to put in paths and bodies."""
    north = api.north
    client = api.client
    group_id = make_group(api, north, "north-group", ["north-L1", "north-L2"])
    document = policy_text().replace("name: residential-part-night", "name: north-secret-policy")
    policy = client.post("/api/v1/policies", json={"document": document}, headers=north.engineer)
    assert policy.status_code == 201, policy.text
    policy_id = policy.json()["id"]
    activation = client.post(
        f"/api/v1/policies/{policy_id}/versions/1/activate",
        json={"group_id": group_id},
        headers=north.engineer,
    )
    assert activation.status_code == 201, activation.text
    override = client.post(
        "/api/v1/overrides",
        json={"lamp_id": "north-L1", "level_frac": 0.8, "duration_s": 600, "reason": "north-works"},
        headers=north.engineer,
    )
    assert override.status_code == 201, override.text
    users = client.get("/api/v1/users", headers=north.admin).json()["items"]
    keys = client.get("/api/v1/api-keys", headers=north.admin).json()["items"]
    job_id = str(uuid.uuid4())
    with api.app.state.ctx.sessions() as session:
        version_id = session.scalar(
            select(PolicyVersion.id).where(PolicyVersion.policy_id == policy_id)
        )
        session.add(
            DryRun(
                id=job_id,
                council_id="north",
                policy_version_id=version_id,
                group_id=group_id,
                status=JobStatus.SUCCEEDED,
                progress_frac=1.0,
                stage="done",
                params={"note": "north-job"},
                report={"scenario": "north-report"},
                created_by="user:north-engineer",
                created_ns=api.clock(),
            )
        )
        record_gateway_status(session, "north", "north-gw1", "online", api.clock())
        record_alarm(
            session,
            "north",
            alarm_id="north-alarm-1",
            kind="lamp_failure",
            started_ns=api.clock(),
            lamp_id="north-L1",
            detail="north-detail",
        )
        session.commit()
    return {
        "lamp_id": "north-L1",
        "lamp_ids": ["north-L1"],
        "group_id": group_id,
        "policy_id": policy_id,
        "number": 1,
        "activation_id": activation.json()["id"],
        "override_id": override.json()["id"],
        "user_id": next(u["id"] for u in users if u["username"] == "north-viewer"),
        "key_id": keys[0]["id"],
        "job_id": job_id,
        "gateway_id": "north-gw1",
    }


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def example(
    schema: dict[str, Any], spec: dict[str, Any], refs: dict[str, Any], name: str = ""
) -> Any:
    """A valid value for ``schema``; fields named like an object reference get north's ids."""
    if name in refs:
        return refs[name]
    schema = _resolve(schema, spec)
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if _resolve(s, spec).get("type") != "null"]
        return example(options[0], spec, refs, name)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        wanted = set(schema.get("required", []))
        # One optional reference is enough (and some bodies take one of several).
        wanted |= set([key for key in props if key in refs][:1])
        return {key: example(props[key], spec, refs, key) for key in sorted(wanted)}
    if kind == "array":
        return [example(schema.get("items", {}), spec, refs)] * max(1, schema.get("minItems", 1))
    if kind == "string":
        if schema.get("format") == "date":
            return "2026-02-01"
        return "x" * max(10, schema.get("minLength", 1))
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0.0))
        return min(float(low) + 0.5, float(schema.get("maximum", 1e9)))
    if kind == "boolean":
        return False
    return None


def _requests(api: Api, refs: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], bool]]:
    """(method, path, httpx kwargs, addresses north) for every operation."""
    spec = api.client.get("/api/v1/openapi.json").json()
    # In bodies, only fields that point at an existing object get north's ids (a lamp's
    # gateway_id, say, is a label the caller sets, not a reference).
    body_refs = {key: refs[key] for key in ("lamp_id", "lamp_ids", "group_id", "activation_id")}
    out = []
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            path = template
            params = operation.get("parameters", [])
            addresses_north = False
            query: dict[str, Any] = {}
            for param in params:
                value = example(param["schema"], spec, refs, param["name"])
                if param["in"] == "path":
                    path = path.replace("{" + param["name"] + "}", str(value))
                    addresses_north = True
                elif param["in"] == "query" and (param.get("required") or param["name"] in refs):
                    query[param["name"]] = value
                    addresses_north |= param["name"] in refs
            kwargs: dict[str, Any] = {"params": query}
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                body = example(content["application/json"]["schema"], spec, body_refs)
                kwargs["json"] = body
                addresses_north |= bool(set(body) & set(refs))
            out.append((method, path, kwargs, addresses_north))
    return out


def _north_snapshot(api: Api) -> dict[str, Any]:
    headers = api.north.admin
    client = api.client
    return {
        path: client.get(
            path, headers=headers, params={"state": "all"} if "overrides" in path else None
        ).json()
        for path in (
            "/api/v1/lamps",
            "/api/v1/groups",
            "/api/v1/policies",
            "/api/v1/overrides",
            "/api/v1/users",
            "/api/v1/api-keys",
            "/api/v1/jobs",
            "/api/v1/gateways",
            "/api/v1/alarms",
            "/api/v1/council",
        )
    }


def test_every_operation_refuses_another_councils_objects(api: Api) -> None:
    refs = _seed_north(api)
    before = _north_snapshot(api)
    assert before["/api/v1/lamps"]["total"] == 2
    requests = _requests(api, refs)
    assert len(requests) >= 50  # the whole document, not a sample
    south_callers = {"south admin token": api.south.admin, "south API key": api.south.key_headers}
    checked_addressing = 0
    for who, headers in south_callers.items():
        for method, path, kwargs, addresses_north in requests:
            if (method, path) in OPEN_OPERATIONS:
                continue
            response = api.client.request(method.upper(), path, headers=headers, **kwargs)
            where = f"{who}: {method.upper()} {path} {kwargs} -> {response.status_code} {response.text[:300]}"
            assert response.status_code < 500, where
            assert "north" not in response.text.lower(), where
            if addresses_north:
                checked_addressing += 1
                assert response.status_code in (401, 403, 404), where
    assert checked_addressing >= 2 * 35  # most operations name an object
    assert _north_snapshot(api) == before
    audit = api.client.get("/api/v1/audit", params={"limit": 500}, headers=api.north.admin).json()
    assert {entry["actor"] for entry in audit["items"]} <= {
        "user:north-admin",
        "user:north-engineer",
        "system:seed",
    }


def test_every_operation_needs_credentials_except_login_and_health(api: Api) -> None:
    refs = _seed_north(api)
    for method, path, kwargs, _ in _requests(api, refs):
        response = api.client.request(method.upper(), path, **kwargs)
        if (method, path) in OPEN_OPERATIONS:
            assert response.status_code != 401, path
            continue
        assert_problem(
            response,
            401,
            "authentication required: send 'Authorization: Bearer <token>' (from "
            "/api/v1/auth/token) or an 'X-API-Key' header",
        )


def test_foreign_and_unknown_ids_read_the_same(api: Api) -> None:
    refs = _seed_north(api)
    foreign = api.client.get(f"/api/v1/groups/{refs['group_id']}", headers=api.south.admin)
    unknown = api.client.get("/api/v1/groups/999999", headers=api.south.admin)
    assert foreign.json() == unknown.json()
    assert_problem(foreign, 404, "there is no such group in your council")
