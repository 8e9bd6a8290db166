"""The rollout page in a real browser, against live_server, a real Celery worker on a private Redis and the
simulator as the fleet: the support user watches the wave bars and counts change without reloading, sees an
unreachable canary as "waiting: unreachable" and opens its site page from the rollout page, pauses and
resumes the rollout with reasons and sees them, then reads a run's timeline.

With FLEET_SCREENSHOTS=1 the rollout page and the run's timeline are saved under docs/console/ (that is
how docs/CONSOLE.md's pictures are made); otherwise under the test's temporary directory.
"""

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from rollouts import services
from rollouts.models import Rollout, SiteRollout
from simulator.testing import Simulator
from sites.models import Site
from tests.console.conftest import wait_for
from tests.rollouts.conftest import POS_BRIDGE_TEMPLATES, simulated_fleet  # noqa: F401 (a fixture)
from tests.support.services import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"


# Read in one script: the live part is swapped every few seconds, so elements found earlier go stale.
COUNTS_JS = """
const found = {};
document.querySelectorAll("#rollout-counts [class^=count-]").forEach(
  el => { found[el.className.replace("count-", "")] = parseInt(el.textContent, 10); });
return found;
"""


def counts(driver: WebDriver) -> dict[str, int]:
    """The rollout's counts as the page shows them now ({"succeeded": 2, "pending": 3, ...})."""
    return dict(driver.execute_script(COUNTS_JS))


def text_of(driver: WebDriver, selector: str) -> str:
    return str(
        driver.execute_script(
            "const el = document.querySelector(arguments[0]); return el ? el.innerText : ''", selector
        )
    )


def start_rollout(sim: Simulator) -> Rollout:
    application = services.application_create(
        actor="test", source="test", name="pos-bridge", team="payments", namespace="pos"
    )
    release = services.release_create(
        actor="test", source="test", application=application, version="2.0.0", templates=POS_BRIDGE_TEMPLATES
    )
    plan = services.rollout_plan_create(
        actor="test",
        source="test",
        name="spring-menu",
        release=release,
        target={"all": True},
        waves=[{"name": "canary", "sites": sim.codes[:2]}, {"name": "rest", "percent": 100}],
        max_parallel=1,
        failure_threshold={"count": 0},
        respect_windows=False,
        site_deadline_seconds=40,
    )
    return services.rollout_start(plan=plan, actor="test", source="test", reason="spring menu")


def screenshot(driver: WebDriver, name: str, tmp_path: Path) -> None:
    folder = DOCS if os.environ.get("FLEET_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / name))


def act(driver: WebDriver, action: str, reason: str) -> None:
    """Click the rollout's action button, give the reason on the confirmation page, confirm."""
    driver.find_element(By.ID, f"action-{action}").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "confirm-action"), 15, f"the {action} confirmation page")
    driver.find_element(By.NAME, "reason").send_keys(reason)
    driver.find_element(By.ID, "confirm-action").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "rollout-live"), 15, "the rollout page again")


def test_support_watches_pauses_resumes_and_opens_an_unreachable_site(
    logged_in: WebDriver,
    live_server: Any,
    celery_worker: Worker,
    simulated_fleet: Callable[[int], Simulator],  # noqa: F811
    tmp_path: Path,
) -> None:
    # Given a fleet of 5 sites whose second canary cannot be reached, and a rollout one site at a time
    sim = simulated_fleet(5)
    offline = sim.codes[1]
    sim.add_fault("offline", site=offline)
    rollout = start_rollout(sim)
    page = f"{live_server.url}/admin/rollouts/rollout/{rollout.pk}/change/"
    driver = logged_in

    # When the support person opens the rollout page and leaves it open
    driver.get(page)
    driver.execute_script("window.__notReloaded = true")
    first = counts(driver)

    # Then the bar and counts change in place: the first canary succeeds, the other waits as unreachable
    wait_for(driver, lambda d: counts(d).get("succeeded", 0) >= 1, 60, "a site counted as succeeded")
    wait_for(driver, lambda d: counts(d).get("unreachable", 0) == 1, 60, "the offline canary waiting: unreachable")
    assert counts(driver) != first
    assert driver.execute_script("return window.__notReloaded === true"), "the page was reloaded"
    assert driver.execute_script("return document.querySelector('#rollout-bar .seg-unreachable') !== null")
    row = f"#rollout-attention tr[data-site='{offline}']"
    wait_for(driver, lambda d: "cannot reach the cluster at" in text_of(d, row), 30, "why the canary waits")
    assert "Waiting: unreachable" in text_of(driver, row)
    screenshot(driver, "rollout.png", tmp_path)

    # And the unreachable site opens its site page
    driver.execute_script("document.querySelector(arguments[0]).click()", f"{row} a.site-link")
    wait_for(driver, lambda d: "/admin/sites/site/" in d.current_url, 15, "the site page")
    assert offline in driver.find_element(By.TAG_NAME, "body").text

    # When they pause it with a reason, then resume it with another
    driver.get(page)
    act(driver, "pause", "lunch rush at the canaries")
    wait_for(driver, lambda d: "Paused" in text_of(d, "#rollout-state"), 15, "the rollout paused")
    assert "lunch rush at the canaries" in text_of(driver, "#rollout-reasons")
    act(driver, "resume", "rush is over")
    reasons = text_of(driver, "#rollout-reasons")
    assert "rush is over" in reasons and "resume" in reasons

    # Then, without a reload, the rest of the fleet goes green as the offline canary is skipped at its deadline
    driver.execute_script("window.__notReloaded = true")
    wait_for(driver, lambda d: counts(d).get("succeeded", 0) >= 4, 120, "the other four sites succeeding")
    wait_for(driver, lambda d: "Succeeded" in text_of(d, "#rollout-state"), 60, "the rollout done")
    assert driver.execute_script("return window.__notReloaded === true"), "the page was reloaded"
    assert counts(driver).get("skipped") == 1
    assert re.search(r"1 could not be reached", text_of(driver, "#rollout-skipped"))

    # And the unreachable site's run reads as a timeline: its polls as one line
    run_id = SiteRollout.objects.get(rollout=rollout, site__code=offline).workflow_run_id
    driver.get(f"{live_server.url}/admin/workflows/workflowrun/{run_id}/change/")
    timeline = driver.find_element(By.ID, "run-timeline").text
    assert re.search(r"waited .*unreachable since .*cannot reach the cluster at .*: \d+ checks?", timeline), timeline
    screenshot(driver, "run-timeline.png", tmp_path)


def test_support_approves_a_wave_seeing_who_may_and_their_reason_after(
    logged_in: WebDriver,
    live_server: Any,
    redis_url: str,  # the broker of the session worker: the approval's wake-up goes there
) -> None:
    # Given a rollout whose canary is done and whose next wave waits for an approval
    for i in range(3):
        Site.objects.create(code=f"AP-{i:04d}", name=f"Restaurant {i}", region="eu", timezone="UTC")
    application = services.application_create(actor="test", source="test", name="menu", team="t", namespace="menu")
    release = services.release_create(
        actor="test", source="test", application=application, version="1.0.0", templates=POS_BRIDGE_TEMPLATES
    )
    plan = services.rollout_plan_create(
        actor="test",
        source="test",
        name="approve-me",
        release=release,
        target={"all": True},
        waves=[{"name": "canary", "count": 1}, {"name": "rest", "percent": 100}],
        require_approval=True,
        failure_threshold={"count": 0},
        respect_windows=False,
    )
    rollout = services.rollout_start(plan=plan, actor="test", source="test", reason="menu")
    services.rollout_wave_open(rollout=rollout, index=0, actor="test", source="test")
    services.rollout_wave_close(rollout=rollout, index=0, actor="test", source="test", bake_until=None)
    services.rollout_transition(rollout=rollout, to="awaiting_approval", actor="test", source="test")
    driver = logged_in

    # When the support person opens it, the page says which wave waits and that they may approve it
    driver.get(f"{live_server.url}/admin/rollouts/rollout/{rollout.pk}/change/")
    callout = text_of(driver, "#rollout-approval")
    assert callout.startswith("wave 1 (rest, 2 sites) waits for an approval") and "support" in callout

    # Then they approve it with a reason, and the page shows it running, the wave approved by them, and why
    act(driver, "approve", "canary healthy for 30 min")
    wait_for(driver, lambda d: "Running" in text_of(d, "#rollout-state"), 15, "the rollout running again")
    assert "approved by support" in text_of(driver, "#rollout-waves")
    assert "canary healthy for 30 min" in text_of(driver, "#rollout-reasons")
