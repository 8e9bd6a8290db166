"""Screenshots of the support console for docs/CONSOLE.md, taken from a running `make dev` in Debian's
Chromium (headless, through Debian's chromedriver; nothing is downloaded).

    .venv/bin/python scripts/console_screenshots.py --url http://127.0.0.1:8000 --user admin --password … \
        [--out docs/console] [--site WA-2083] [--search Charlotte]

It logs in, then saves the dashboard, a failing site's page (the first degraded, else unreachable, one unless
--site), the
page of that site's first node, a search with several results and the site list filtered on health.
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait


def browser(profile: Path) -> WebDriver:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never reach the network
    binary = os.environ.get("FLEET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("FLEET_CHROMEDRIVER") or shutil.which("chromedriver")
    if not binary or not driver:
        sys.exit("Debian's chromium and chromium-driver are needed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def save(driver: WebDriver, out: Path, name: str) -> None:
    height = driver.execute_script("return Math.min(document.body.scrollHeight, 2400)")
    driver.set_window_size(1400, max(int(height), 800))
    driver.save_screenshot(str(out / f"{name}.png"))
    driver.set_window_size(1400, 1000)
    print(f"saved {out / name}.png")  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/console"))
    parser.add_argument("--site", default="")
    parser.add_argument("--search", default="Charlotte")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    driver = browser(Path(tempfile.mkdtemp(prefix="console-shots-")))
    wait = WebDriverWait(driver, 30)
    try:
        driver.get(f"{args.url}/admin/login/")
        driver.find_element(By.NAME, "username").send_keys(args.user)
        driver.find_element(By.NAME, "password").send_keys(args.password)
        driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait.until(lambda d: "/admin/login/" not in d.current_url)
        driver.get(f"{args.url}/admin/")
        wait.until(lambda d: d.find_elements(By.ID, "dashboard"))
        save(driver, args.out, "dashboard")

        for health in ("degraded", "unreachable", ""):
            driver.get(
                f"{args.url}/admin/sites/site/?health__exact={health}" if health else f"{args.url}/admin/sites/site/"
            )
            if driver.find_elements(By.CSS_SELECTOR, "#result_list tbody tr th a"):
                break
        save(driver, args.out, "site-list")
        if args.site:
            driver.get(f"{args.url}/admin/console/search/?q={args.site}")
        else:
            driver.find_element(By.CSS_SELECTOR, "#result_list tbody tr th a").click()
        wait.until(lambda d: d.find_elements(By.ID, "site-nodes"))
        save(driver, args.out, "site")

        driver.find_element(By.CSS_SELECTOR, "#site-nodes tbody tr td a").click()
        wait.until(lambda d: d.find_elements(By.ID, "node-live"))
        save(driver, args.out, "node")

        driver.get(f"{args.url}/admin/console/search/?q={args.search}")
        save(driver, args.out, "search")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
