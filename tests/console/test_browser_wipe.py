"""In a real Chromium, as a support user: wipe a machine from its node page through the typed confirmation,
and watch its state change on that page without a reload, while a real worker carries the wipe out
against the simulator."""

from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from simulator.testing import Simulator
from sites.choices import NodeState
from sites.models import Site
from tests.console.conftest import wait_for
from tests.sites.test_lifecycle_support import agent, fleet, live_simulator

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

__all__ = ["fleet"]  # the fixture, used here by name


@pytest.fixture(scope="module")
def sim(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with live_simulator(live_server, tmp_path_factory, sites=1) as running:
        yield running


def node_state(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "node-state").get_attribute("data-state"))


def test_wipe_a_node_from_its_page_through_the_typed_confirmation_and_see_it_change_live(
    logged_in: WebDriver, live_server: Any, fleet: list[Site]
) -> None:
    node = agent(fleet[0])
    browser = logged_in
    browser.get(f"{live_server.url}/admin/sites/node/{node.pk}/change/")
    assert node_state(browser) == NodeState.ACTIVE

    browser.find_element(By.CSS_SELECTOR, f'a.node-button[href$="/{node.pk}/wipe/"]').click()
    wait_for(browser, lambda d: d.find_elements(By.NAME, "confirm"), 15, "the wipe confirmation")
    browser.find_element(By.NAME, "reason").send_keys("sold to a franchisee")
    browser.find_element(By.NAME, "confirm").send_keys("not-" + node.hostname)  # a typo: refused, nothing starts
    browser.find_element(By.CSS_SELECTOR, "form input[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".errorlist"), 15, "the refusal of the typo")

    browser.find_element(By.NAME, "reason").clear()
    browser.find_element(By.NAME, "reason").send_keys("sold to a franchisee")
    browser.find_element(By.NAME, "confirm").clear()
    browser.find_element(By.NAME, "confirm").send_keys(node.hostname)
    browser.find_element(By.CSS_SELECTOR, "form input[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "node-live"), 15, "the node page again")
    assert "Wipe of" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text

    # No reload from here on: the page's fragment follows the workflow.
    wait_for(browser, lambda d: node_state(d) == NodeState.WIPED, 120, "the node page to show the machine wiped")
    assert "node.wipe run" in browser.find_element(By.ID, "node-live").text
