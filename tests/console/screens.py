"""Screenshots of the console's pages for docs/CONSOLE.md, taken by the browser tests when
FLEET_CONSOLE_SCREENSHOTS names a directory (e.g. `FLEET_CONSOLE_SCREENSHOTS=docs/console`); a test run
without it writes nothing."""

import os
from pathlib import Path

from selenium.webdriver.remote.webdriver import WebDriver


def screenshot(driver: WebDriver, name: str) -> None:
    folder = os.environ.get("FLEET_CONSOLE_SCREENSHOTS")
    if not folder:
        return
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.min(document.body.scrollHeight, 2400)")
    driver.set_window_size(1400, max(int(height), 800))
    driver.save_screenshot(str(path / f"{name}.png"))
    driver.set_window_size(1400, 1000)
