"""In a real Chromium, as a support user (view and operate permissions, not superuser): the dashboard counts a
node down after the simulator kills the machine, without a reload, once a real worker's probe has seen it;
the search box lands on a site; the site page shows it. The simulator, the imported fleet and the probes are
those of tests/sites/test_health_worker.py (its own worker with a short FLEET_NODE_DOWN_AFTER, on its own
queue)."""

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from simulator.testing import Simulator
from sites.models import Alert, Site
from tests.console.conftest import wait_for
from tests.console.screens import screenshot
from tests.sites.test_health_worker import fleet, probe, probe_until, probe_worker, sim
from tests.sites.test_lifecycle_support import agent
from tests.support.services import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

__all__ = ["fleet", "probe_worker", "sim"]  # the health tests' simulator, fleet and worker, used here by name


def nodes_down(driver: WebDriver) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, "#nodes-down .n").text)


def test_the_dashboard_counts_a_node_down_after_the_simulator_kills_it(
    logged_in: WebDriver, live_server: Any, sim: Simulator, fleet: list[Site], probe_worker: Worker
) -> None:
    site = fleet[0]
    for each in fleet:
        probe(each, probe_worker)
    browser = logged_in
    browser.get(f"{live_server.url}/admin/")
    wait_for(browser, lambda d: nodes_down(d) == "0", 15, "the dashboard to count no node down")
    healthy = browser.find_element(By.CSS_SELECTOR, '#sites-by-health [data-health="healthy"] .n').text
    assert healthy == str(len(fleet))

    victim = agent(site)
    sim.add_fault("node_death", site=site.code, node=victim.hostname)
    probe_until(site, probe_worker, lambda s: Alert.objects.filter(node=victim).exists(), "a node-down alert")

    # No reload: the dashboard's fragment is fetched again every few seconds.
    wait_for(browser, lambda d: nodes_down(d) == "1", 30, "the dashboard to count the dead machine")
    degraded = browser.find_element(By.CSS_SELECTOR, '#sites-by-health [data-health="degraded"] .n a')
    assert degraded.text == "1"
    assert site.code in browser.find_element(By.ID, "last-failures").text
    screenshot(browser, "dashboard")

    # The failing site's count is a link to the filtered list; its code there leads to the site page.
    degraded.click()
    wait_for(browser, lambda d: "health__exact=degraded" in d.current_url, 15, "the filtered site list")
    browser.find_element(By.LINK_TEXT, site.code).click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "site-nodes"), 15, "the site page")
    row = browser.find_element(By.CSS_SELECTOR, f'#site-nodes tr[data-node="{victim.hostname}"]')
    assert "Not seen" in row.text and "Replace…" in row.text
    # Times in the viewer's zone with seconds, the restaurant's local time beside (console.js).
    since = browser.find_element(By.CSS_SELECTOR, "#site-health time")
    assert since.get_attribute("data-localized") == "1" and "(site " in since.text
    screenshot(browser, "site")

    # The search box: a site code lands on its page, a city lists its restaurants.
    box = browser.find_element(By.CSS_SELECTOR, "#console-search input[name=q]")
    box.send_keys(victim.hostname, Keys.ENTER)
    wait_for(browser, lambda d: f"/admin/sites/node/{victim.pk}/change/" in d.current_url, 15, "the node's page")
    assert "Not seen" in browser.find_element(By.ID, "node-live").text
    screenshot(browser, "node")
    market = str(site.labels.get("market", site.name.split()[0]))
    browser.find_element(By.CSS_SELECTOR, "#console-search input[name=q]").send_keys(site.name[:3], Keys.ENTER)
    wait_for(browser, lambda d: "/admin/console/search/" in d.current_url or "/change/" in d.current_url, 15, market)
    screenshot(browser, "search")
