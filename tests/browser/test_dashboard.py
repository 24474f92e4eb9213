"""The dashboard in a real browser against the real service (see conftest.py).

Each test logs in as a council's engineer and checks what the page shows against what the API
holds: the map's lamps and their live levels, presence flashes, a lamp's telemetry chart,
overrides, the policy editor's inline validation, a dry run's comparison, activation and
roll-back, reports, alarms, and that another council's user sees nothing of the first council.
"""

from __future__ import annotations

import re
import time
import zoneinfo
from datetime import datetime

from playwright.sync_api import Locator, Page, expect

from api.db import record_alarm
from api.feed import AlarmEvent, LevelsEvent, PresenceEvent
from domain.records import ReadingKind
from tests.browser.conftest import (
    POLICY,
    TZ,
    UI_TIMEOUT_MS,
    Dashboard,
    login,
    reading,
    screenshot,
)

NS = 1_000_000_000
BAD_STEP = POLICY.read_text(encoding="utf-8").replace("level_frac: 0.75}", "level_frac: 1.4}", 1)
V2 = (
    POLICY.read_text(encoding="utf-8")
    .replace("\nversion: 1", "\nversion: 2")
    .replace("level_frac: 0.75}", "level_frac: 0.7}", 1)
)


def dot(page: Page, lamp_id: str) -> Locator:
    return page.locator(f'[data-testid="lamp-dot"][data-lamp-id="{lamp_id}"]')


def test_login_and_logout(page: Page, dashboard: Dashboard) -> None:
    council = dashboard.bristol
    page.goto(dashboard.url + "/")
    expect(page.get_by_test_id("login-view")).to_be_visible()
    page.get_by_test_id("login-username").fill(council.engineer)
    page.get_by_test_id("login-password").fill("not the password")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_have_text("wrong username or password")
    screenshot(page, "01-login-refused")

    login(page, dashboard, council)
    expect(page.get_by_test_id("user-name")).to_have_text("bristol-engineer (engineer)")
    assert page.evaluate("sessionStorage.getItem('streetlight.token')")
    # A reload keeps the session (the token is in sessionStorage).
    page.reload()
    expect(page.get_by_test_id("lamp-dot")).to_have_count(len(council.lamps))

    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-view")).to_be_visible()
    expect(page.get_by_test_id("app")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('streetlight.token')") is None
    expect(page.get_by_test_id("lamp-dot")).to_have_count(0)
    assert "BRS-" not in page.content()
    page.reload()
    expect(page.get_by_test_id("login-view")).to_be_visible()
    screenshot(page, "02-logged-out")


def test_map_shows_exactly_the_councils_lamps_with_their_latest_levels(
    page: Page, dashboard: Dashboard
) -> None:
    council = dashboard.bristol
    lit, off, full = council.lamp_ids[:3]
    now = time.time_ns()
    dashboard.write(
        [
            reading(lit, ReadingKind.LEVEL_FRAC, 0.6, now - 60 * NS),
            reading(off, ReadingKind.LEVEL_FRAC, 0.0, now - 60 * NS),
            reading(full, ReadingKind.LEVEL_FRAC, 1.0, now - 60 * NS),
        ]
    )
    login(page, dashboard, council)
    shown = page.get_by_test_id("lamp-dot").evaluate_all(
        "dots => dots.map(d => d.getAttribute('data-lamp-id'))"
    )
    assert sorted(shown) == sorted(council.lamp_ids)
    api_ids = [
        lamp["lamp_id"] for lamp in dashboard.get(council, "/api/v1/lamps", limit=500)["items"]
    ]
    assert sorted(shown) == sorted(api_ids)
    expect(page.get_by_test_id("lamp-count")).to_have_text(f"{len(council.lamps)} lamps")
    # The stream's snapshot carries the historian's latest levels.
    expect(dot(page, lit)).to_have_attribute("data-level", "0.6")
    expect(dot(page, off)).to_have_attribute("data-level", "0")
    expect(dot(page, full)).to_have_attribute("data-level", "1")
    assert dot(page, off).get_attribute("fill") == "#3a3a3a"  # dark grey: off
    assert dot(page, full).get_attribute("fill") == "rgb(255, 236, 40)"  # bright yellow: full
    assert dot(page, lit).get_attribute("fill") not in ("#3a3a3a", "rgb(255, 236, 40)")
    expect(page.get_by_test_id("map-legend")).to_contain_text("full output")
    # Pan and zoom move the dots on screen.
    before = dot(page, lit).bounding_box()
    page.get_by_test_id("map").hover()
    page.mouse.wheel(0, -400)
    after = dot(page, lit).bounding_box()
    assert before is not None and after is not None and before != after
    page.get_by_test_id("map-fit").click()
    screenshot(page, "03-map")


def test_levels_and_presence_published_on_the_feed_show_live(
    page: Page, dashboard: Dashboard
) -> None:
    council = dashboard.bristol
    a, b, c = council.lamp_ids[3:6]
    login(page, dashboard, council)
    started = time.monotonic()
    dashboard.feed.publish(council.id, LevelsEvent(time.time_ns(), {a: 0.25, b: 0.0, c: 1.0}))
    expect(dot(page, a)).to_have_attribute("data-level", "0.25", timeout=UI_TIMEOUT_MS)
    expect(dot(page, b)).to_have_attribute("data-level", "0", timeout=UI_TIMEOUT_MS)
    expect(dot(page, c)).to_have_attribute("data-level", "1", timeout=UI_TIMEOUT_MS)
    latency_s = time.monotonic() - started
    assert latency_s < UI_TIMEOUT_MS / 1000
    print(f"levels event to dots updated: {latency_s * 1000:.0f} ms")

    dashboard.feed.publish(council.id, PresenceEvent(time.time_ns(), "pir-harbour-7", (a, b)))
    ring = page.locator(f'[data-testid="presence-ring"][data-lamp-id="{a}"]')
    expect(ring).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(page.locator(f'[data-testid="presence-ring"][data-lamp-id="{b}"]')).to_have_count(1)
    expect(page.get_by_test_id("event-log-entry").first).to_contain_text(
        f"presence at pir-harbour-7: {a}, {b}"
    )
    screenshot(page, "04-map-live-presence")
    expect(ring).to_have_count(0, timeout=UI_TIMEOUT_MS)  # the flash fades out
    assert dot(page, a).get_attribute("data-presence-count") == "1"


def test_lamp_details_chart_shows_the_historians_telemetry(
    page: Page, dashboard: Dashboard
) -> None:
    council = dashboard.bristol
    lamp_id = council.isolated(1)[0]
    now = time.time_ns()
    times = [now - (120 - 10 * k) * 60 * NS for k in range(12)]  # every 10 min, last 2 h
    levels = [1.0, 1.0, 0.75, 0.75, 0.75, 0.5, 0.5, 0.5, 0.2, 0.2, 0.0, 0.0]
    dashboard.write(
        [reading(lamp_id, ReadingKind.LEVEL_FRAC, v, t) for v, t in zip(levels, times, strict=True)]
        + [
            reading(lamp_id, ReadingKind.POWER_W, 2.0 + 68.0 * v, t)
            for v, t in zip(levels, times, strict=True)
        ]
        + [reading(lamp_id, ReadingKind.ENERGY_WH, 5250.0, times[-1])]
    )
    login(page, dashboard, council)
    dot(page, lamp_id).click()
    expect(page.get_by_test_id("lamp-title")).to_have_text(lamp_id)
    chart = page.get_by_test_id("lamp-chart")
    expect(chart.get_by_test_id("chart-level")).to_have_attribute("data-points", "12")
    expect(chart.get_by_test_id("chart-power")).to_have_attribute("data-points", "12")
    expect(chart.get_by_test_id("chart-power")).to_have_attribute("data-last", "2")
    expect(page.get_by_test_id("live-power")).to_have_text("2.0 W")
    expect(page.get_by_test_id("live-energy")).to_have_text("5.250 kWh")
    group = next(lamp.group for lamp in council.lamps if lamp.lamp_id == lamp_id)
    expect(page.get_by_test_id("lamp-fields")).to_contain_text(f"Group{group}")

    # A new reading, announced on the feed as the controller would, reaches the open chart.
    later = time.time_ns()
    dashboard.write(
        [
            reading(lamp_id, ReadingKind.LEVEL_FRAC, 0.4, later),
            reading(lamp_id, ReadingKind.POWER_W, 29.2, later),
        ]
    )
    dashboard.feed.publish(council.id, LevelsEvent(later, {lamp_id: 0.4}))
    expect(page.get_by_test_id("live-level")).to_have_text("40.0 %", timeout=UI_TIMEOUT_MS)
    expect(chart.get_by_test_id("chart-level")).to_have_attribute(
        "data-points", "13", timeout=UI_TIMEOUT_MS
    )
    expect(page.get_by_test_id("chart-level")).to_have_attribute("data-last", "0.4")
    expect(page.get_by_test_id("live-power")).to_have_text("29.2 W")
    screenshot(page, "05-lamp-details")


def test_override_created_in_the_ui_exists_in_the_api_and_can_be_cancelled(
    page: Page, dashboard: Dashboard
) -> None:
    council = dashboard.bristol
    lamp_id = council.isolated(2)[1]
    login(page, dashboard, council)
    dot(page, lamp_id).click()
    expect(page.get_by_test_id("lamp-title")).to_have_text(lamp_id)
    form = page.get_by_test_id("lamp-details").get_by_test_id("override-form")
    form.get_by_test_id("override-level").fill("80")
    form.get_by_test_id("override-duration").fill("30")
    form.get_by_test_id("override-reason").fill("resurfacing works")
    form.get_by_test_id("override-submit").click()
    row = page.locator(f'[data-testid="override-row"][data-lamp-id="{lamp_id}"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text("80 %")
    expect(row).to_contain_text("resurfacing works")
    expect(page.get_by_test_id("live-override")).to_have_text("80.0 %")

    current = dashboard.get(council, "/api/v1/overrides", state="current", lamp_id=lamp_id)
    assert current["total"] == 1
    override = current["items"][0]
    assert (override["level_frac"], override["reason"], override["created_by"]) == (
        0.8,
        "resurfacing works",
        "user:bristol-engineer",
    )
    assert override["state"] == "active"
    assert override["expires_ns"] - override["starts_ns"] == 30 * 60 * NS
    assert row.get_attribute("data-override-id") == str(override["id"])
    screenshot(page, "06-override")

    row.get_by_test_id("cancel-override").click()
    expect(row).to_have_count(0)
    expect(page.get_by_test_id("live-override")).to_have_text("none")
    cancelled = dashboard.get(council, f"/api/v1/overrides/{override['id']}")
    assert (cancelled["state"], cancelled["cancelled_by"]) == ("cancelled", "user:bristol-engineer")


def test_group_details_show_its_policy_and_live_levels_and_take_a_group_override(
    page: Page, dashboard: Dashboard
) -> None:
    council = dashboard.bristol
    group_id = council.groups["old-city"]
    members = [lamp.lamp_id for lamp in council.lamps if lamp.group == "old-city"]
    login(page, dashboard, council)
    dashboard.feed.publish(council.id, LevelsEvent(time.time_ns(), dict.fromkeys(members, 0.0)))
    expect(dot(page, members[0])).to_have_attribute("data-level", "0", timeout=UI_TIMEOUT_MS)
    page.get_by_test_id("group-select").select_option(str(group_id))
    panel = page.get_by_test_id("group-details")
    expect(panel.get_by_test_id("group-title")).to_have_text("old-city")
    expect(panel.get_by_test_id("group-lamps")).to_have_text(str(len(members)))
    expect(panel.get_by_test_id("group-policy")).to_have_text("none (fail-bright default)")
    # The map brings the group's lamps forward.
    expect(page.locator('[data-testid="lamp-dot"].in-group')).to_have_count(len(members))
    off_bar = panel.locator('[data-testid="bar"][data-category="off"]')
    expect(off_bar).to_have_attribute("data-value", str(len(members)))
    # Live: half the group comes on at full output, and the level chart follows.
    lit = members[: len(members) // 2]
    dashboard.feed.publish(council.id, LevelsEvent(time.time_ns(), dict.fromkeys(lit, 1.0)))
    expect(off_bar).to_have_attribute(
        "data-value", str(len(members) - len(lit)), timeout=UI_TIMEOUT_MS
    )
    expect(panel.locator('[data-testid="bar"][data-category="76–100 %"]')).to_have_attribute(
        "data-value", str(len(lit))
    )

    form = panel.get_by_test_id("override-form")
    form.get_by_test_id("override-level").fill("50")
    form.get_by_test_id("override-duration").fill("120")
    form.get_by_test_id("override-reason").fill("christmas market")
    form.get_by_test_id("override-submit").click()
    row = page.locator(f'[data-testid="override-row"][data-group-id="{group_id}"]')
    expect(row).to_contain_text("group old-city")
    screenshot(page, "06b-group-details")
    current = dashboard.get(council, "/api/v1/overrides", state="current", group_id=group_id)
    assert [(o["level_frac"], o["reason"]) for o in current["items"]] == [(0.5, "christmas market")]
    row.get_by_test_id("cancel-override").click()
    expect(row).to_have_count(0)
    assert (
        dashboard.get(council, "/api/v1/overrides", state="current", group_id=group_id)["total"]
        == 0
    )
    page.get_by_test_id("group-select").select_option("")
    expect(panel).to_be_hidden()
    expect(page.locator('[data-testid="lamp-dot"].in-group')).to_have_count(0)


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_policy_editor_shows_the_validators_messages_next_to_their_lines(
    page: Page, dashboard: Dashboard
) -> None:
    login(page, dashboard, dashboard.bristol)
    page.get_by_test_id("nav-policies").click()
    page.locator('[data-testid="policy-row"][data-policy-name="residential-part-night"]').click()
    editor = page.get_by_test_id("policy-editor")
    expect(editor).to_have_value(POLICY.read_text(encoding="utf-8"))

    editor.fill(BAD_STEP)
    page.get_by_test_id("policy-validate").click()
    issue = page.get_by_test_id("policy-issue")
    expect(issue).to_have_count(1)
    line = _line_of(BAD_STEP, "level_frac: 1.4")
    expect(issue).to_have_attribute("data-where", "profiles.part_night.steps[0].level_frac")
    expect(issue).to_have_attribute("data-line", str(line))
    expect(issue.get_by_test_id("policy-issue-message")).to_have_text(
        "1.4 is above 1.0; levels are fractions of full output"
    )
    expect(page.get_by_test_id("policy-invalid")).to_have_text(
        "the policy is invalid (1 problem(s))"
    )
    gutter = page.get_by_test_id("gutter-issue")
    expect(gutter).to_have_count(1)
    expect(gutter).to_have_attribute("data-line", str(line))
    screenshot(page, "07-policy-invalid")

    # A YAML syntax error is located by the line the parser reports.
    broken = BAD_STEP.replace("lux_on: 35", "lux_on: [35", 1)
    editor.fill(broken)
    page.get_by_test_id("policy-validate").click()
    expect(issue).to_have_count(1)
    expect(issue).to_have_attribute("data-where", "document")
    message = issue.get_by_test_id("policy-issue-message").text_content() or ""
    reported = re.search(r"\(line (\d+), column \d+\)", message)
    assert message.startswith("is not valid YAML or JSON: ") and reported, message
    expect(issue).to_have_attribute("data-line", reported.group(1))

    # Nothing was saved by validating.
    assert (
        dashboard.get(dashboard.bristol, f"/api/v1/policies/{dashboard.policy_id}")["versions"] == 1
    )
    editor.fill(POLICY.read_text(encoding="utf-8"))
    page.get_by_test_id("policy-validate").click()
    expect(page.get_by_test_id("policy-valid")).to_have_text(
        "Valid: residential-part-night, document version 1."
    )
    expect(page.get_by_test_id("gutter-issue")).to_have_count(0)


def test_dry_run_from_the_ui_compares_with_the_current_policy_then_activate_and_roll_back(
    page: Page, dashboard: Dashboard
) -> None:
    council = dashboard.bristol
    group_id = council.groups["harbourside"]
    login(page, dashboard, council)
    page.get_by_test_id("nav-policies").click()
    page.locator('[data-testid="policy-row"][data-policy-name="residential-part-night"]').click()
    expect(page.get_by_test_id("policy-editor")).to_have_value(POLICY.read_text(encoding="utf-8"))
    page.get_by_test_id("policy-editor").fill(V2)
    page.get_by_test_id("policy-group").select_option(str(group_id))
    page.get_by_test_id("dry-run-first-night").fill("2026-01-10")
    page.get_by_test_id("policy-simulate").click()

    table = page.get_by_test_id("comparison-table")
    expect(table).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("dry-run-stage")).to_have_text("succeeded")
    assert page.get_by_test_id("dry-run-progress").evaluate("p => p.value") == 1
    rows = table.get_by_test_id("comparison-row")
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.policy)") == [
        "residential-part-night v2",
        "residential-part-night v1 (active)",
    ]
    current_row = table.locator('[data-policy="residential-part-night v1 (active)"]')
    expect(current_row).to_have_class("current")
    # The figures are the job's report, as the API gives it.
    job = dashboard.get(council, "/api/v1/jobs", limit=1)["items"][0]
    assert (job["status"], job["version"], job["group_id"]) == ("succeeded", 2, group_id)
    assert table.get_attribute("data-job-id") == job["id"]
    report = dashboard.get(council, f"/api/v1/jobs/{job['id']}/report")
    for figures in report["policies"]:
        row = table.locator(f'[data-policy="{figures["policy"]}"]')
        expect(row.locator('[data-col="energy"]')).to_have_text(f"{figures['energy_kwh']:,.2f}")
        expect(row.locator('[data-col="co2"]')).to_have_text(f"{figures['co2_kg']:,.2f}")
        expect(row.locator('[data-col="commands"]')).to_have_text(str(figures["commands"]))
    saving = report["policies"][0]["saving_vs_current_frac"]
    assert 0.0 < saving < 0.1  # 70 % instead of 75 % before midnight saves a little
    expect(
        table.locator('[data-policy="residential-part-night v2"] [data-col="saving-current"]')
    ).to_have_text(f"{saving * 100:.1f} %")
    screenshot(page, "08-policy-dry-run")

    page.get_by_test_id("policy-activate").click()
    expect(page.get_by_test_id("policy-action-ok")).to_have_text(
        "residential-part-night v2 is now in force on group harbourside."
    )
    group = dashboard.get(council, f"/api/v1/groups/{group_id}")
    assert (group["active"]["policy_name"], group["active"]["version"]) == (
        "residential-part-night",
        2,
    )
    activations = dashboard.get(council, f"/api/v1/groups/{group_id}/activations")["items"]
    assert activations[0]["dry_run_id"] == job["id"]
    expect(page.locator('[data-testid="activation-row"][data-active="true"]')).to_have_attribute(
        "data-version", "2"
    )
    screenshot(page, "09-policy-activated")

    page.get_by_test_id("policy-rollback").click()
    expect(page.get_by_test_id("policy-action-ok")).to_have_text(
        "Group harbourside rolled back to residential-part-night v1."
    )
    group = dashboard.get(council, f"/api/v1/groups/{group_id}")
    assert group["active"]["version"] == 1
    newest = dashboard.get(council, f"/api/v1/groups/{group_id}/activations")["items"][0]
    assert newest["rolled_back_from"] == activations[0]["id"]
    expect(page.locator('[data-testid="activation-row"][data-active="true"]')).to_have_attribute(
        "data-version", "1"
    )
    screenshot(page, "10-policy-rolled-back")


def test_reports_and_alarms(page: Page, dashboard: Dashboard) -> None:
    council = dashboard.bristol
    used = set(council.lamp_ids[:6]) | set(council.isolated(2))
    lamp_id = next(x for x in reversed(council.lamp_ids) if x not in used)
    group = next(lamp.group for lamp in council.lamps if lamp.lamp_id == lamp_id)
    now = time.time_ns()
    local_midnight = datetime.fromtimestamp(now / NS, zoneinfo.ZoneInfo(TZ)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    first = max(now - 1800 * NS, int(local_midnight.timestamp()) * NS + NS)
    dashboard.write(
        [
            reading(lamp_id, ReadingKind.ENERGY_WH, 10_000.0, first),
            reading(lamp_id, ReadingKind.ENERGY_WH, 10_250.0, now),
            reading(lamp_id, ReadingKind.LEVEL_FRAC, 0.05, first),
            reading(lamp_id, ReadingKind.PRESENCE, 1.0, first + NS),
        ]
    )
    login(page, dashboard, council)
    page.get_by_test_id("nav-reports").click()
    today = datetime.fromtimestamp(now / NS, zoneinfo.ZoneInfo(TZ)).date().isoformat()
    energy_row = page.locator(
        f'[data-testid="energy-row"][data-day="{today}"][data-group="{group}"]'
    )
    expect(energy_row).to_have_attribute("data-energy-kwh", "0.25")
    expect(energy_row).to_contain_text("0.250")
    bar = page.locator(
        f'[data-testid="energy-chart"] [data-testid="bar"][data-category="{today}"][data-series="{group}"]'
    )
    expect(bar).to_have_attribute("data-value", "0.25")
    api_rows = dashboard.get(
        council, "/api/v1/reports/compliance", first_day=today, last_day=today
    )["rows"]
    api_row = next(r for r in api_rows if r["group_name"] == group)
    assert api_row["judged"] >= 1
    ui_row = page.locator(
        f'[data-testid="compliance-row"][data-day="{today}"][data-group="{group}"]'
    )
    share = api_row["below_floor_share"]
    expect(ui_row.locator('[data-col="share"]')).to_have_text(f"{share * 100:.1f} %")
    screenshot(page, "11-reports")

    alarm_id = f"lamp:{lamp_id}:lamp_failure:{now}"
    with dashboard.app.state.ctx.sessions() as session:
        record_alarm(
            session,
            council.id,
            alarm_id=alarm_id,
            kind="lamp_failure",
            started_ns=now,
            lamp_id=lamp_id,
            detail="no light output while commanded on",
        )
        session.commit()
    raised = AlarmEvent(now, alarm_id, "lamp_failure", "lamp", lamp_id, started_ns=now)
    dashboard.feed.publish(council.id, raised)
    expect(page.get_by_test_id("alarm-badge")).to_have_text("1", timeout=UI_TIMEOUT_MS)
    page.get_by_test_id("nav-alarms").click()
    row = page.locator(f'[data-testid="alarm-row"][data-alarm-id="{alarm_id}"]')
    expect(row).to_contain_text("lamp_failure")
    expect(row).to_contain_text("no light output while commanded on")
    screenshot(page, "12-alarms")

    ended = time.time_ns()
    with dashboard.app.state.ctx.sessions() as session:
        record_alarm(
            session,
            council.id,
            alarm_id=alarm_id,
            kind="lamp_failure",
            started_ns=now,
            ended_ns=ended,
            lamp_id=lamp_id,
            detail="no light output while commanded on",
        )
        session.commit()
    dashboard.feed.publish(
        council.id,
        AlarmEvent(
            ended, alarm_id, "lamp_failure", "lamp", lamp_id, started_ns=now, ended_ns=ended
        ),
    )
    expect(row).to_have_count(0, timeout=UI_TIMEOUT_MS)  # the open list drops it live
    expect(page.get_by_test_id("alarm-badge")).to_be_hidden()
    page.get_by_test_id("alarm-state").select_option("all")
    expect(row).to_have_attribute("data-open", "false")


def test_another_councils_user_sees_none_of_the_first_councils_lamps(
    page: Page, dashboard: Dashboard
) -> None:
    bristol, champaign = dashboard.bristol, dashboard.champaign
    login(page, dashboard, bristol)
    dot(page, bristol.isolated(1)[0]).click()
    expect(page.get_by_test_id("lamp-title")).to_have_text(bristol.isolated(1)[0])
    page.get_by_test_id("logout").click()

    # The same tab, the other council: nothing of Bristol's may remain or arrive.
    login(page, dashboard, champaign)
    shown = page.get_by_test_id("lamp-dot").evaluate_all(
        "dots => dots.map(d => d.getAttribute('data-lamp-id'))"
    )
    assert sorted(shown) == sorted(champaign.lamp_ids)
    expect(page.get_by_test_id("lamp-details")).to_be_hidden()
    target = champaign.isolated(1)[0]
    dot(page, target).click()
    expect(page.get_by_test_id("lamp-title")).to_have_text(target)

    dashboard.feed.publish(
        bristol.id, LevelsEvent(time.time_ns(), dict.fromkeys(bristol.lamp_ids, 0.5))
    )
    dashboard.feed.publish(
        bristol.id, PresenceEvent(time.time_ns(), "pir-bristol", tuple(bristol.lamp_ids))
    )
    dashboard.feed.publish(champaign.id, LevelsEvent(time.time_ns(), {target: 0.3}))
    expect(dot(page, target)).to_have_attribute("data-level", "0.3", timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("presence-ring")).to_have_count(0)
    expect(page.get_by_test_id("event-log-entry")).to_have_count(0)

    pages = {}
    for view in ("map", "policies", "reports", "alarms"):
        page.get_by_test_id(f"nav-{view}").click()
        expect(page.get_by_test_id(f"view-{view}")).to_be_visible()
        if view == "reports":
            expect(page.get_by_test_id("energy-table")).to_be_visible()
        if view == "policies":
            expect(page.get_by_test_id("policy-list")).to_contain_text("No policies yet.")
        if view == "alarms":
            expect(page.get_by_test_id("alarm-list")).to_contain_text("No alarms.")
        pages[view] = page.content()
        screenshot(page, f"13-other-council-{view}")
    for view, html in pages.items():
        leaked = [lamp_id for lamp_id in bristol.lamp_ids if lamp_id in html]
        assert leaked == [], f"{view} shows Bristol's lamps {leaked}"
        assert "Bristol" not in html and "harbourside" not in html, view
    assert "residential-part-night" not in pages["policies"]
