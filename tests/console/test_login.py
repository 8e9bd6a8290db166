"""The support account logs in through the real login form and sees the admin, not a superuser's tools."""

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = [pytest.mark.integration]


def test_support_user_reaches_the_admin_and_sees_sites(logged_in: WebDriver, live_server: Any) -> None:
    body = logged_in.find_element(By.TAG_NAME, "body").text
    assert "Sites" in body
    assert "Users" not in body  # auth administration is not a support person's page


def test_wrong_password_stays_on_login(browser: WebDriver, live_server: Any, support_user: Any) -> None:
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(support_user.username)
    browser.find_element(By.NAME, "password").send_keys("not-the-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    assert "/admin/login/" in browser.current_url
    assert "correct username and password" in browser.find_element(By.TAG_NAME, "body").text
