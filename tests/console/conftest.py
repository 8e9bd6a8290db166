"""A real browser for the console's tests: Debian's Chromium driven by Selenium through Debian's chromedriver.

Nothing is downloaded: the driver and the browser are the executables on PATH (or FLEET_CHROMEDRIVER /
FLEET_CHROMIUM), and Selenium Manager is kept offline. Where no Chromium is installed the browser tests
are skipped with the reason, unless FLEET_REQUIRE_BROWSER=1 (CI sets it), where they fail instead.
"""

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

SUPPORT_PASSWORD = "support-password-1"  # noqa: S105 (a test account on a throw-away database)

# What a support person holds: every page's view permission plus the operating ones; never superuser.
SUPPORT_APPS = ("sites", "rollouts", "workflows", "audit")
SUPPORT_OPERATE = (
    "sites.probe_site",
    "sites.provision_node",
    "sites.wipe_node",
    "sites.change_node",
    "sites.change_site",
    "rollouts.change_rollout",
    "rollouts.approve_rollout",
    "rollouts.change_siterollout",
)


def _executable(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def chrome_paths() -> tuple[str, str]:
    browser = _executable("FLEET_CHROMIUM", "chromium", "chromium-browser")
    driver = _executable("FLEET_CHROMEDRIVER", "chromedriver")
    if not browser or not driver:
        reason = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("FLEET_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return browser, driver


@pytest.fixture
def browser(chrome_paths: tuple[str, str], tmp_path: Any) -> Iterator[WebDriver]:
    """A headless Chromium with its own profile, closed after the test."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never reach the network
    binary, driver_path = chrome_paths
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def support_user(transactional_db: None) -> User:
    """A staff account with view and operate permissions, not a superuser."""
    user = User.objects.create_user("support", password=SUPPORT_PASSWORD, is_staff=True)
    perms = Permission.objects.filter(content_type__app_label__in=SUPPORT_APPS, codename__startswith="view_")
    user.user_permissions.add(*perms)
    for dotted in SUPPORT_OPERATE:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def wait_for(driver: WebDriver, predicate: Callable[[WebDriver], Any], timeout: float, what: str) -> Any:
    """Wait until the page shows what the test expects (the DOM is polled; the message names the wait). The
    live pages swap their fragments every few seconds, so an element found a moment ago may be gone: that
    poll is retried, not failed."""
    wait = WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(predicate, message=f"timed out waiting for {what}")


@pytest.fixture
def logged_in(browser: WebDriver, live_server: Any, support_user: User) -> WebDriver:
    """The browser, logged into the admin as the support user through the login form."""
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(support_user.username)
    browser.find_element(By.NAME, "password").send_keys(SUPPORT_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    wait_for(browser, lambda d: "/admin/login/" not in d.current_url, 15, "the login to land on the admin")
    return browser
