"""A rater in headless Chromium: consent, pairs answered by click and by key, a reload in the
middle, the completion code; the database holds exactly the answers clicked."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest

from tests.browser import _FLAGS, chromium_available
from tests.studies.human_fixtures import CODE, make_study, served

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


def _driver(profile: str, width: int):
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},900")
    options.add_argument(f"--user-data-dir={profile}")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    # a phone's viewport (headless windows have a minimum width of their own)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": True},
    )
    return driver


def test_a_rater_answers_by_click_and_key_and_gets_the_code(tmp_path: Path) -> None:
    if not chromium_available():
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    manifest = make_study(tmp_path, sources=2, checks=1)  # 3 items
    by_image = {
        "/" + it[f"image_{side}"]: (it["id"], side) for it in manifest["items"] for side in "ab"
    }
    expected: list[tuple[str, str]] = []  # (item, model side chosen: a or b)
    with served(tmp_path) as url, tempfile.TemporaryDirectory() as profile:
        driver = _driver(profile, 390)  # phone width
        wait = WebDriverWait(driver, 15)
        try:
            driver.get(f"{url}/?PROLIFIC_PID=rater_7")
            driver.find_element(By.ID, "start").click()

            def ready(_d: object) -> bool:
                button = driver.find_element(By.ID, "left")
                return button.is_displayed() and button.is_enabled()

            def shown() -> tuple[str, str]:
                wait.until(ready)
                left = driver.execute_script(
                    "return new URL(document.querySelector('#left img').src).pathname"
                )
                right = driver.execute_script(
                    "return new URL(document.querySelector('#right img').src).pathname"
                )
                return by_image[left], by_image[right]

            def count() -> str:
                return driver.find_element(By.ID, "count").text

            left, right = shown()
            assert count() == "Pair 1 of 3"
            assert "looks more like a" in driver.find_element(By.ID, "question").text
            driver.find_element(By.ID, "left").click()  # click
            expected.append(left)
            wait.until(lambda d: count() == "Pair 2 of 3")
            driver.refresh()  # a reload continues where the rater left
            wait.until(lambda d: count() == "Pair 2 of 3")
            left, right = shown()
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)  # key
            expected.append(right)
            wait.until(lambda d: count() == "Pair 3 of 3")
            left, right = shown()
            driver.find_element(By.TAG_NAME, "body").send_keys("1")
            expected.append(left)
            wait.until(lambda d: driver.find_element(By.ID, "code").text == CODE)
            assert not driver.find_element(By.ID, "task").is_displayed()
            width = driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]"
            )
            assert width[0] <= width[1] == 390, f"the page scrolls sideways at phone width: {width}"
        finally:
            driver.quit()
    db = sqlite3.connect(tmp_path / "answers.sqlite")
    stored = db.execute("SELECT rater, item, chosen FROM answers ORDER BY position").fetchall()
    db.close()
    assert stored == [("rater_7", item, side) for item, side in expected]
    assert json.loads((tmp_path / "manifest.json").read_text())["completion_code"] == CODE
