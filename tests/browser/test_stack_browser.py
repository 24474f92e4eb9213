"""The dashboard over the whole running stack (`make run`): a real headless Chromium watching a
virtual night, with levels coming from the virtual OPC-UA controllers through the gateway and
the central service, and an override made in the browser checked at the virtual controller."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import queue
import re
import threading
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect

from streetlight.stack import DEMO_PASSWORD, DEMO_USER, OTHER_USER, Stack, StackOptions, run_stack
from tests.browser.conftest import screenshot
from tests.integration.conftest import free_port

pytestmark = pytest.mark.timeout(420)
#: Half a minute before 22:00, when the presence policy drops the centre from full to 50 %.
START = dt.datetime(2026, 1, 15, 21, 59, 35, tzinfo=ZoneInfo("Europe/London"))
N_LAMPS = 60


class RunningStack:
    """`run_stack` on its own thread and event loop (Playwright's sync API owns this one)."""

    def __init__(self, options: StackOptions) -> None:
        self._ready: queue.Queue[Stack | BaseException] = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, args=(options,), daemon=True)

    def _run(self, options: StackOptions) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await run_stack(options, self._stop, on_ready=self._ready.put)

        try:
            asyncio.run(main())
        except BaseException as err:  # reported to the test through the queue
            self._ready.put(err)

    def __enter__(self) -> Stack:
        self._thread.start()
        got = self._ready.get(timeout=180)
        if isinstance(got, BaseException):
            raise got
        return got

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    options = StackOptions(
        data_dir=tmp_path_factory.mktemp("stack") / "run",
        api_port=free_port(),
        broker_port=free_port(),
        lamps=N_LAMPS,
        speed=1.0,
        start=START,
    )
    with RunningStack(options) as running:
        yield running


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == []


def _login(page: Page, stack: Stack, user: str) -> None:
    page.goto(stack.services.api_url + "/")
    page.get_by_test_id("login-username").fill(user)
    page.get_by_test_id("login-password").fill(DEMO_PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("stream-status")).to_have_text("live", timeout=30_000)


def _dot(page: Page, lamp_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'[data-testid="lamp-dot"][data-lamp-id="{lamp_id}"]')


def _quiet_lamp(stack: Stack, group: str) -> str:
    """The lamp of ``group`` farthest from every sensor's lamp, on a street without sensors:
    beyond the presence policy's 60 m neighbour reach, so no boost and no demand step reach it
    and it follows the policy's plain levels."""
    by_id = {lamp.lamp_id: lamp for lamp in stack.town.lamps}
    sensed = [by_id[i] for lamps in stack.sensors.values() for i in lamps]
    sensed_streets = {lamp.street for lamp in sensed}

    def distance_m(lamp) -> float:  # type: ignore[no-untyped-def]
        cos = math.cos(math.radians(lamp.lat_deg))
        return min(
            math.hypot((lamp.lon_deg - s.lon_deg) * cos, lamp.lat_deg - s.lat_deg) * 111_320
            for s in sensed
        )

    candidates = [
        lamp
        for lamp in stack.town.lamps
        if lamp.group == group and lamp.street not in sensed_streets
    ]
    assert candidates, f"every {group} lamp is on a street with sensors"
    best = max(candidates, key=distance_m)
    assert distance_m(best) > 60.0, f"no {group} lamp is beyond 60 m of the sensors"
    return best.lamp_id


def _wait(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.2)


def test_the_dashboard_follows_the_virtual_night_and_commands_the_virtual_controllers(
    tab: Page, stack: Stack
) -> None:
    page = tab
    lamps = [lamp.lamp_id for lamp in stack.town.lamps]
    centre = _quiet_lamp(stack, "centre")
    outer = next(lamp.lamp_id for lamp in stack.town.lamps if lamp.group == "outer")
    _login(page, stack, DEMO_USER)
    expect(page.get_by_test_id("lamp-dot")).to_have_count(N_LAMPS)
    screenshot(page, "stack-01-map-before-22")

    # The night runs: at 22:00 the presence policy takes the centre from full to its 50 % base.
    # The dot follows what the lamp reports, through gateway, ingest and the live stream.
    def level(lamp_id: str) -> float:
        return float(_dot(page, lamp_id).get_attribute("data-level") or "nan")

    _wait(lambda: abs(level(centre) - 1.0) < 0.01, 60, "the centre at full before 22:00")
    _wait(lambda: abs(level(centre) - 0.5) < 0.01, 90, "the centre dims at 22:00")
    screenshot(page, "stack-02-map-after-22")

    # An override made in the browser reaches the virtual OPC-UA controller.
    _dot(page, outer).click()
    expect(page.get_by_test_id("lamp-title")).to_have_text(outer)
    form = page.get_by_test_id("lamp-details").get_by_test_id("override-form")
    form.get_by_test_id("override-level").fill("90")
    form.get_by_test_id("override-duration").fill("30")
    form.get_by_test_id("override-reason").fill("event in the square")
    form.get_by_test_id("override-submit").click()
    expect(page.locator(f'[data-testid="override-row"][data-lamp-id="{outer}"]')).to_have_count(1)
    _wait(lambda: abs(stack.setpoint_frac(outer) - 0.9) < 1e-6, 30, "override at the controller")
    _wait(lambda: abs(level(outer) - 0.9) < 0.01, 30, "the dot shows the override")
    screenshot(page, "stack-03-override")

    # A dry run of an edited policy from the editor, compared with the policy in force.
    page.get_by_test_id("nav-policies").click()
    page.locator('[data-testid="policy-row"][data-policy-name="estate-presence-adaptive"]').click()
    editor = page.get_by_test_id("policy-editor")
    expect(editor).to_have_value(re.compile(r"name: estate-presence-adaptive"))
    # A shorter presence hold, as the document's next version.
    edited = (
        editor.input_value()
        .replace("hold_s: 60", "hold_s: 30", 1)
        .replace("version: 3", "version: 4", 1)
    )
    assert edited != editor.input_value()
    editor.fill(edited)
    groups = page.get_by_test_id("policy-group")
    value = groups.locator("option", has_text="centre").first.get_attribute("value")
    assert value is not None
    groups.select_option(value)
    page.get_by_test_id("dry-run-first-night").fill("2026-01-15")
    page.get_by_test_id("policy-simulate").click()
    table = page.get_by_test_id("comparison-table")
    expect(table).to_be_visible(timeout=120_000)
    expect(table.get_by_test_id("comparison-row")).to_have_count(2)
    expect(table.locator(".current")).to_have_count(1)
    screenshot(page, "stack-04-dry-run")

    # Another council's user, same tab: none of the demo council's lamps anywhere.
    page.get_by_test_id("logout").click()
    _login(page, stack, OTHER_USER)
    shown = page.get_by_test_id("lamp-dot").evaluate_all(
        "dots => dots.map(d => d.getAttribute('data-lamp-id'))"
    )
    assert shown and not set(shown) & set(lamps)
    html = page.content()
    assert [i for i in lamps if i in html] == []
    screenshot(page, "stack-05-other-council")
