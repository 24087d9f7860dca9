"""The dashboard in a real headless Chromium, against a running scheduler.

Debian's ``chromium`` and ``chromium-driver``, driven by Selenium; Selenium
Manager is kept offline (both paths are given and ``SE_OFFLINE`` is set), so
nothing is downloaded. Without them these tests skip and say what to install.

Every wait is an explicit `WebDriverWait` on a condition, never a sleep. The
screenshots each test takes are kept as test artifacts in ``artifacts/dashboard``
(or ``$POSTROOM_ARTIFACTS/dashboard``), printed in the summary.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actors import JobContext, JobStatus, Scheduler

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = (
    "the dashboard's browser tests need Debian's Chromium and its driver: "
    "apt-get install chromium chromium-driver"
)

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[test]' (selenium)")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(INSTALL, allow_module_level=True)

from selenium.common.exceptions import (  # noqa: E402  (after the skip: optional)
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 15.0
"""Seconds any condition may take: a poll is every 2 s, so several polls' worth."""

ARTIFACTS = Path(os.environ.get("POSTROOM_ARTIFACTS", Path(__file__).parent.parent / "artifacts"))
SHOTS = ARTIFACTS / "dashboard"


@dataclass
class Gates:
    """What the test's handlers wait on and report."""

    release: threading.Event = field(default_factory=threading.Event)
    reported: threading.Event = field(default_factory=threading.Event)


@dataclass
class Admin:
    sched: Scheduler
    url: str
    token: str
    gates: Gates


def boom(ctx: JobContext, payload: object) -> None:
    raise ValueError("<script>window.pwned = 2</script> broke")


@pytest.fixture
def admin() -> Iterator[Admin]:
    """A started scheduler (1 worker) serving the admin API and the page on a free port."""
    gates = Gates()

    def gated(ctx: JobContext, payload: object) -> str:
        # Reports half way, then waits for the test to let it finish.
        ctx.progress(0.5, "half way")
        gates.reported.set()
        if not gates.release.wait(WAIT * 2):
            raise TimeoutError("the test never released the job")
        ctx.progress(1.0, "done")
        return "released"

    def blocking(ctx: JobContext, payload: object) -> None:
        # Runs until cancelled (ctx.wait returns early when told to stop).
        ctx.progress(0.0, "blocking")
        gates.reported.set()
        ctx.wait(WAIT * 4)
        ctx.raise_if_cancelled()

    sched = Scheduler(workers=1)
    sched.register("gated", gated)
    sched.register("blocking", blocking)
    sched.register("tick", lambda ctx, payload: None)
    sched.register("boom", boom)
    with sched:
        server = sched.serve_admin(0)
        try:
            yield Admin(sched, f"http://127.0.0.1:{server.port}/", server.token, gates)
        finally:
            gates.release.set()
            server.stop()


@pytest.fixture(scope="session")
def shots_dir(request: pytest.FixtureRequest) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        request.addfinalizer(lambda: reporter.write_line(f"dashboard screenshots: {SHOTS}"))
    return SHOTS


@pytest.fixture
def browser(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shots_dir: Path
) -> Iterator[WebDriver]:
    """Headless Chromium with its console log readable; Selenium Manager never asked."""
    # Both paths are given, so Selenium has nothing to look for; SE_OFFLINE
    # makes sure its manager, if it ran at all, would not go online.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace for the sandbox
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Wait until ``condition`` is truthy; a row swapped by a poll is looked up again."""
    return WebDriverWait(
        driver,
        WAIT,
        poll_frequency=0.05,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(condition, message=f"waited {WAIT} s for {what}")


def click(driver: WebDriver, css: str) -> None:
    """Click the element ``css`` finds, once it is there (found afresh on each try)."""

    def clicked(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait_for(driver, clicked, f"{css} to be clickable")


def text(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def shoot(driver: WebDriver, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot at {path}"


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def open_page(driver: WebDriver, admin: Admin) -> None:
    driver.get(admin.url)
    wait_for(driver, lambda d: text(d, "#live").startswith("live"), "the first poll")


def enter_token(driver: WebDriver, token: str) -> None:
    """Answer the page's token dialog."""
    wait_for(driver, lambda d: d.find_element(By.ID, "token-dialog").is_displayed(), "the dialog")
    driver.find_element(By.ID, "token-input").send_keys(token)
    driver.find_element(By.ID, "token-ok").click()


def set_visibility(driver: WebDriver, value: str) -> None:
    """Make the page believe its tab went to the background (or came back)."""
    driver.execute_script(
        "Object.defineProperty(document, 'visibilityState', {value: arguments[0],"
        " configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'));",
        value,
    )


def test_the_page_loads_offline_with_no_console_errors(
    admin: Admin, browser: WebDriver, shots_dir: Path
) -> None:
    admin.sched.every("tick", 3600, id="hourly")
    open_page(browser, admin)
    # Every figure is filled from the stats, the default queue is listed.
    assert text(browser, "[data-figure=workers] b") == "1"
    assert browser.find_elements(By.CSS_SELECTOR, "#queues tr[data-queue=default]")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-schedule=hourly]"), "row")
    # Nothing fetched from anywhere but the scheduler's own server.
    origin = admin.url.rstrip("/")
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert fetched, "the page polled nothing"
    assert all(url.startswith(origin + "/") for url in fetched), fetched
    assert console_errors(browser) == []
    shoot(browser, shots_dir, "dashboard-laptop")
    # A phone's width: nothing wider than the screen (the tables scroll inside
    # their section, never the page).
    browser.set_window_size(390, 844)
    wait_for(
        browser,
        lambda d: d.execute_script("return document.documentElement.scrollWidth <= innerWidth"),
        "the page to fit a phone's width",
    )
    shoot(browser, shots_dir, "dashboard-phone")
    assert console_errors(browser) == []


def test_polls_only_while_visible(admin: Admin, browser: WebDriver) -> None:
    open_page(browser, admin)
    assert browser.execute_script("return state.timer !== null")
    # The tab goes to the background: no next poll is planned.
    set_visibility(browser, "hidden")
    assert text(browser, "#live") == "paused while hidden"
    assert browser.execute_script("return state.timer === null")
    # Back in front: it polls at once and plans the next one.
    set_visibility(browser, "visible")
    wait_for(browser, lambda d: text(d, "#live").startswith("live"), "a poll on return")
    wait_for(browser, lambda d: d.execute_script("return state.timer !== null"), "the next poll")


def test_shows_a_job_live_as_it_progresses_and_finishes(
    admin: Admin, browser: WebDriver, shots_dir: Path
) -> None:
    hostile = {"note": "<img src=x onerror=\"window.pwned=1\"><b>not bold</b>"}
    failed = admin.sched.submit("boom")
    assert failed.wait(WAIT)
    open_page(browser, admin)
    # The failure, its error and traceback shown as text.
    failure = f".failure[data-job='{failed.id}']"
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, failure), "the failure")
    assert text(browser, f"{failure} .err") == (
        "ValueError: <script>window.pwned = 2</script> broke"
    )
    click(browser, f"{failure} summary")
    wait_for(browser, lambda d: "raise ValueError" in text(d, f"{failure} pre"), "its traceback")
    handle = admin.sched.submit("gated", hostile)
    assert admin.gates.reported.wait(WAIT)
    running = f".running-job[data-job='{handle.id}']"
    wait_for(browser, lambda d: text(d, f"{running} .progress-text") == "50% half way", "progress")
    bar = browser.find_element(By.CSS_SELECTOR, f"{running} [role=progressbar]")
    assert bar.get_attribute("aria-valuenow") == "50"
    row = f"#jobs tr[data-job='{handle.id}']"
    assert text(browser, f"{row} .status") == "running"
    assert text(browser, f"{row} td:nth-child(2)") == "gated"
    # The detail, with the payload shown as text, not as markup.
    click(browser, f"{row} .job-link")
    wait_for(browser, lambda d: "not bold" in text(d, "#detail .payload"), "the payload")
    assert "<b>not bold</b>" in text(browser, "#detail .payload")
    assert browser.find_elements(By.CSS_SELECTOR, "#detail img, #detail .payload b") == []
    shoot(browser, shots_dir, "job-running")

    admin.gates.release.set()
    assert handle.wait(WAIT)
    wait_for(browser, lambda d: text(d, f"{row} .status") == "completed", "the job to complete")
    wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, running), "running to empty")
    wait_for(browser, lambda d: "completed" in text(d, "#detail dd .status"), "the detail")
    wait_for(browser, lambda d: "completed" in text(d, "#detail table.runs"), "its run")
    assert browser.execute_script("return window.pwned === undefined")
    # The chart: a poll saw it running, a later one completed, so a point of
    # the throughput line is above zero and the figure above the chart says so.
    wait_for(
        browser,
        lambda d: d.execute_script("return points().some(p => p.rate > 0)"),
        "a completion on the chart",
    )
    assert text(browser, "#chart-now").startswith("now ")
    # The traceback opened before stays open across polls.
    assert browser.find_element(By.CSS_SELECTOR, f"{failure} details").get_attribute("open")
    shoot(browser, shots_dir, "job-completed")
    assert console_errors(browser) == []


def test_cancels_jobs_from_their_buttons(
    admin: Admin, browser: WebDriver, shots_dir: Path
) -> None:
    running = admin.sched.submit("blocking")
    assert admin.gates.reported.wait(WAIT)
    waiting = admin.sched.submit("blocking")  # one worker: it waits behind the first
    open_page(browser, admin)
    # The waiting one first: the page asks for the token then.
    click(browser, f"#jobs tr[data-job='{waiting.id}'] .cancel")
    enter_token(browser, admin.token)
    assert waiting.wait(WAIT)
    assert waiting.status is JobStatus.CANCELLED
    wait_for(
        browser,
        lambda d: text(d, f"#jobs tr[data-job='{waiting.id}'] .status") == "cancelled",
        "the waiting job shown cancelled",
    )
    assert browser.execute_script("return sessionStorage.getItem('postroom.admin.token')") == (
        admin.token
    )
    # The running one from its progress row: the token is not asked again.
    click(browser, f".running-job[data-job='{running.id}'] .cancel")
    assert running.wait(WAIT)
    assert running.status is JobStatus.CANCELLED
    assert not browser.find_element(By.ID, "token-dialog").is_displayed()
    wait_for(
        browser,
        lambda d: text(d, f"#jobs tr[data-job='{running.id}'] .status") == "cancelled",
        "the running job shown cancelled",
    )
    shoot(browser, shots_dir, "jobs-cancelled")
    assert console_errors(browser) == []


def test_pauses_and_resumes_a_schedule_from_its_buttons(
    admin: Admin, browser: WebDriver, shots_dir: Path
) -> None:
    schedule = admin.sched.every("tick", 3600, id="hourly")
    open_page(browser, admin)
    row = "tr[data-schedule=hourly]"
    wait_for(browser, lambda d: text(d, f"{row} .schedule-state") == "active", "the schedule")
    click(browser, f"{row} .pause")
    enter_token(browser, admin.token)
    wait_for(browser, lambda _: schedule.info().paused, "the schedule to pause")
    wait_for(browser, lambda d: text(d, f"{row} .schedule-state") == "paused", "it shown paused")
    shoot(browser, shots_dir, "schedule-paused")
    click(browser, f"{row} .resume")
    wait_for(browser, lambda _: not schedule.info().paused, "the schedule to resume")
    wait_for(browser, lambda d: text(d, f"{row} .schedule-state") == "active", "it shown active")
    assert console_errors(browser) == []


def test_a_wrong_token_is_refused_and_forgotten(admin: Admin, browser: WebDriver) -> None:
    schedule = admin.sched.every("tick", 3600, id="hourly")
    open_page(browser, admin)
    click(browser, "tr[data-schedule=hourly] .pause")
    enter_token(browser, "not-the-token")
    wait_for(browser, lambda d: "unauthorized" in text(d, "#toast"), "the refusal")
    assert browser.execute_script("return sessionStorage.getItem('postroom.admin.token')") is None
    assert not schedule.info().paused
