"""Policy versions, validation, activation (refused when invalid), rollback, dry-run jobs."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from api.db import DryRun, JobStatus, PolicyVersion, active_policies
from tests.api.conftest import Api, assert_problem, lamp_body, make_group, make_policy, policy_text

BAD_STEP = policy_text().replace("level_frac: 0.75}", "level_frac: 1.4}", 1)
V2 = (
    policy_text()
    .replace("\nversion: 1", "\nversion: 2")
    .replace("level_frac: 0.75}", "level_frac: 0.7}", 1)
)
P6_ONLY_ISSUE = {
    "where": "lighting_classes",
    "message": "group 'g' has 1 lamp(s) of class P6, which the policy does not list; add P6 to "
    "lighting_classes or move those lamps",
}


def test_validate_without_saving(api: Api) -> None:
    ok = api.client.post(
        "/api/v1/policies/validate", json={"document": policy_text()}, headers=api.north.viewer
    )
    assert ok.json() == {"valid": True, "name": "residential-part-night", "version": 1}
    assert_problem(
        api.client.post(
            "/api/v1/policies/validate", json={"document": BAD_STEP}, headers=api.north.viewer
        ),
        422,
        "the policy is invalid (1 problem(s))",
        [
            {
                "where": "profiles.part_night.steps[0].level_frac",
                "message": "1.4 is above 1.0; levels are fractions of full output",
            }
        ],
    )
    assert api.client.get("/api/v1/policies", headers=api.north.viewer).json()["total"] == 0


def test_versions_are_numbered_and_invalid_ones_kept(api: Api) -> None:
    headers = api.north.engineer
    policy_id = make_policy(api, api.north)
    bad = api.client.post(
        f"/api/v1/policies/{policy_id}/versions", json={"document": BAD_STEP}, headers=headers
    )
    assert bad.status_code == 201
    assert (bad.json()["number"], bad.json()["valid"]) == (2, False)
    assert bad.json()["issues"][0]["where"] == "profiles.part_night.steps[0].level_frac"
    stale = api.client.post(
        f"/api/v1/policies/{policy_id}/versions", json={"document": policy_text()}, headers=headers
    )
    assert stale.json()["issues"] == [
        {"where": "version", "message": "1 does not increase on version 1; give 2 or more"}
    ]
    good = api.client.post(
        f"/api/v1/policies/{policy_id}/versions", json={"document": V2}, headers=headers
    )
    assert (good.json()["number"], good.json()["valid"]) == (4, True)
    listed = api.client.get(
        f"/api/v1/policies/{policy_id}/versions", headers=api.north.viewer
    ).json()
    assert [(v["number"], v["valid"]) for v in listed["items"]] == [
        (1, True),
        (2, False),
        (3, False),
        (4, True),
    ]
    summary = api.client.get(f"/api/v1/policies/{policy_id}", headers=api.north.viewer).json()
    assert summary["versions"] == 4 and summary["latest"]["number"] == 4
    assert_problem(
        api.client.post("/api/v1/policies", json={"document": policy_text()}, headers=headers),
        409,
        "a policy with this name already exists in your council; add a version to it instead",
    )


def test_activation_refused_for_invalid_version_and_uncovered_classes(api: Api) -> None:
    headers = api.north.engineer
    group_id = make_group(api, api.north, "g", ["L1"])
    policy_id = make_policy(api, api.north)
    api.client.post(
        f"/api/v1/policies/{policy_id}/versions", json={"document": BAD_STEP}, headers=headers
    )
    assert_problem(
        api.client.post(
            f"/api/v1/policies/{policy_id}/versions/2/activate",
            json={"group_id": group_id},
            headers=headers,
        ),
        422,
        "policy 'residential-part-night' version 2 is invalid, so it cannot be used; save a corrected version",
        [
            {
                "where": "profiles.part_night.steps[0].level_frac",
                "message": "1.4 is above 1.0; levels are fractions of full output",
            }
        ],
    )
    api.client.patch("/api/v1/lamps/L1", json={"lighting_class": "P6"}, headers=headers)
    assert_problem(
        api.client.post(
            f"/api/v1/policies/{policy_id}/versions/1/activate",
            json={"group_id": group_id},
            headers=headers,
        ),
        422,
        "policy 'residential-part-night' version 1 does not cover the lamps of the group",
        [P6_ONLY_ISSUE],
    )
    assert api.client.get(f"/api/v1/groups/{group_id}", headers=headers).json()["active"] is None
    with api.app.state.ctx.sessions() as session:
        assert active_policies(session, "north") == []


def test_activate_roll_back_and_deactivate(api: Api) -> None:
    headers = api.north.engineer
    group_id = make_group(api, api.north, "g", ["L1", "L2"])
    policy_id = make_policy(api, api.north)
    api.client.post(
        f"/api/v1/policies/{policy_id}/versions", json={"document": V2}, headers=headers
    )
    first = api.client.post(
        f"/api/v1/policies/{policy_id}/versions/1/activate",
        json={"group_id": group_id},
        headers=headers,
    )
    assert first.status_code == 201 and first.json()["version"] == 1
    api.clock.advance(60)
    second = api.client.post(
        f"/api/v1/policies/{policy_id}/versions/2/activate",
        json={"group_id": group_id},
        headers=headers,
    )
    assert second.json()["version"] == 2
    with api.app.state.ctx.sessions() as session:
        [active] = active_policies(session, "north")
    assert (active.group_name, active.lamp_ids, active.version) == ("g", ("L1", "L2"), 2)
    assert active.policy is not None and active.policy.version == 2
    api.clock.advance(60)
    back = api.client.post(f"/api/v1/groups/{group_id}/rollback", json={}, headers=headers)
    assert back.status_code == 201
    assert (back.json()["version"], back.json()["rolled_back_from"]) == (1, second.json()["id"])
    history = api.client.get(
        f"/api/v1/groups/{group_id}/activations", headers=api.north.viewer
    ).json()
    assert [(a["version"], a["active"]) for a in history["items"]] == [
        (1, True),
        (2, False),
        (1, False),
    ]
    assert history["items"][1]["deactivated_ns"] == api.clock()
    assert_problem(
        api.client.delete(f"/api/v1/policies/{policy_id}", headers=headers),
        409,
        "a version of this policy is active on a group; deactivate it first",
    )
    assert (
        api.client.delete(f"/api/v1/groups/{group_id}/activation", headers=headers).status_code
        == 204
    )
    assert api.client.get(f"/api/v1/groups/{group_id}", headers=headers).json()["active"] is None
    assert_problem(
        api.client.delete(f"/api/v1/groups/{group_id}/activation", headers=headers),
        409,
        "no policy is active on this group",
    )
    actions = [
        e["action"]
        for e in api.client.get(
            "/api/v1/audit", params={"target": f"group:{group_id}"}, headers=headers
        ).json()["items"]
    ]
    assert actions == [
        "policy.deactivate",
        "policy.rollback",
        "policy.activate",
        "policy.activate",
        "group.create",
    ]


def test_rollback_needs_history(api: Api) -> None:
    group_id = make_group(api, api.north, "g", ["L1"])
    assert_problem(
        api.client.post(f"/api/v1/groups/{group_id}/rollback", json={}, headers=api.north.engineer),
        409,
        "the group has no earlier activation to roll back to",
    )


def _wait_for_job(api: Api, job_id: str, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Poll the job until it ends; returns every status seen (the job runs on real threads)."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = api.client.get(f"/api/v1/jobs/{job_id}", headers=api.north.viewer).json()
        seen.append(job)
        if job["status"] in ("succeeded", "failed"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {seen[-1]}")


def test_dry_run_job_runs_to_a_report_compared_with_the_active_policy(api: Api) -> None:
    headers = api.north.engineer
    group_id = make_group(api, api.north, "g", ["L1", "L2", "L3", "L4"])
    policy_id = make_policy(api, api.north)
    api.client.post(
        f"/api/v1/policies/{policy_id}/versions/1/activate",
        json={"group_id": group_id},
        headers=headers,
    )
    api.client.post(
        f"/api/v1/policies/{policy_id}/versions", json={"document": V2}, headers=headers
    )
    started = api.client.post(
        f"/api/v1/policies/{policy_id}/versions/2/dry-runs",
        json={"group_id": group_id, "first_night": "2026-01-10", "nights": 1},
        headers=headers,
    )
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status"] in ("queued", "running") and job["params"]["first_night"] == "2026-01-10"
    seen = _wait_for_job(api, job["id"])
    final = seen[-1]
    assert final["status"] == "succeeded", final["error"]
    assert final["progress_frac"] == 1.0
    progress = [s["progress_frac"] for s in seen]
    assert progress == sorted(progress)
    report = api.client.get(f"/api/v1/jobs/{job['id']}/report", headers=api.north.viewer).json()
    assert report["lamps"] == 4 and report["nights"] == ["2026-01-10"]
    names = [p["policy"] for p in report["policies"]]
    assert names == ["residential-part-night v2", "residential-part-night v1 (active)"]
    assert report["current_policy"] == "residential-part-night v1 (active)"
    candidate = report["policies"][0]
    # Dimming to 70 % instead of 75 % from 22:00 to midnight saves energy against v1.
    assert 0.0 < candidate["saving_vs_current_frac"] < 0.1
    activated = api.client.post(
        f"/api/v1/policies/{policy_id}/versions/2/activate",
        json={"group_id": group_id},
        headers=headers,
    )
    assert activated.json()["dry_run_id"] == job["id"]


def test_dry_run_defaults_to_recent_nights_and_refuses_empty_groups(api: Api) -> None:
    headers = api.north.engineer
    policy_id = make_policy(api, api.north)
    empty = api.client.post("/api/v1/groups", json={"name": "empty"}, headers=headers).json()["id"]
    assert_problem(
        api.client.post(
            f"/api/v1/policies/{policy_id}/versions/1/dry-runs",
            json={"group_id": empty},
            headers=headers,
        ),
        422,
        "the dry run cannot start",
        [{"where": "body.group_id", "message": "the group has no lamps to simulate"}],
    )
    group_id = make_group(api, api.north, "g", ["L1"])
    started = api.client.post(
        f"/api/v1/policies/{policy_id}/versions/1/dry-runs",
        json={"group_id": group_id, "nights": 2},
        headers=headers,
    ).json()
    # The clock reads 2026-03-01 12:00 UTC: the two most recent whole nights.
    assert started["params"]["first_night"] == "2026-02-27"
    final = _wait_for_job(api, started["id"])[-1]
    assert final["status"] == "succeeded", final["error"]
    report = api.client.get(f"/api/v1/jobs/{started['id']}/report", headers=headers).json()
    assert report["nights"] == ["2026-02-27", "2026-02-28"]
    assert report["current_policy"] is None
    jobs = api.client.get("/api/v1/jobs", headers=api.north.viewer).json()
    assert jobs["total"] == 1 and jobs["items"][0]["id"] == started["id"]


def test_jobs_interrupted_by_a_restart_fail_and_have_no_report(api: Api) -> None:
    group_id = make_group(api, api.north, "g", ["L1"])
    policy_id = make_policy(api, api.north)
    ctx = api.app.state.ctx
    with ctx.sessions() as session:
        version_id = session.scalar(
            select(PolicyVersion.id).where(PolicyVersion.policy_id == policy_id)
        )
        session.add(
            DryRun(
                id="left-over",
                council_id="north",
                policy_version_id=version_id,
                group_id=group_id,
                status=JobStatus.RUNNING,
                params={},
                created_by="user:north-engineer",
                created_ns=api.clock(),
            )
        )
        session.commit()
    assert ctx.jobs.fail_interrupted() == 1
    job = api.client.get("/api/v1/jobs/left-over", headers=api.north.viewer).json()
    assert job["status"] == "failed"
    assert_problem(
        api.client.get("/api/v1/jobs/left-over/report", headers=api.north.viewer),
        409,
        "the job is failed; a report exists only once it has succeeded (error: interrupted: the "
        "service restarted before the job finished; run it again)",
    )


def test_lamps_a_group_policy_does_not_cover_cannot_join_it(api: Api) -> None:
    headers = api.north.engineer
    group_id = make_group(api, api.north, "g", ["L1"])
    policy_id = make_policy(api, api.north)
    api.client.post(
        f"/api/v1/policies/{policy_id}/versions/1/activate",
        json={"group_id": group_id},
        headers=headers,
    )
    detail = "the change would put lamps under a policy that does not cover their lighting class"
    assert_problem(
        api.client.post(
            "/api/v1/lamps",
            json=lamp_body("L6", lighting_class="P6", group_id=group_id),
            headers=headers,
        ),
        422,
        detail,
        [P6_ONLY_ISSUE],
    )
    assert_problem(
        api.client.patch("/api/v1/lamps/L1", json={"lighting_class": "P6"}, headers=headers),
        422,
        detail,
        [P6_ONLY_ISSUE],
    )
    api.client.post("/api/v1/lamps", json=lamp_body("L7", lighting_class="P6"), headers=headers)
    assert_problem(
        api.client.post(
            f"/api/v1/groups/{group_id}/lamps", json={"lamp_ids": ["L7"]}, headers=headers
        ),
        422,
        detail,
        [P6_ONLY_ISSUE],
    )
    lamps = api.client.get(f"/api/v1/groups/{group_id}/lamps", headers=headers).json()["items"]
    assert [(lamp["lamp_id"], lamp["lighting_class"]) for lamp in lamps] == [("L1", "P4")]
