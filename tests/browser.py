"""Render an HTML report in headless Chromium (Debian's chromium + chromedriver, driven by
selenium) and say what a person would see broken: images that did not load, empty sections."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# For every <h2>/<h3>: the text and number of images/tables/paragraphs until the next heading.
_INSPECT = """
const images = [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}));
const sections = [];
for (const h of document.querySelectorAll('h2, h3')) {
  let n = 0, el = h.nextElementSibling;
  while (el && !/^H[1-3]$/.test(el.tagName)) {
    if (el.textContent.trim() || el.matches('img') || el.querySelector('img')) n += 1;
    el = el.nextElementSibling;
  }
  const nested = el && el.tagName > h.tagName;  // an h3 right under an h2 is content
  sections.push({title: h.textContent.trim(), blocks: n + (nested ? 1 : 0)});
}
// a table whose box scrolls sideways: its right columns are hidden until scrolled
const clipped = [...document.querySelectorAll('div.table')]
  .filter(d => d.scrollWidth > d.clientWidth + 1)
  .map(d => (d.querySelector('th') || d).textContent.trim().slice(0, 60));
return {title: document.title, images: images, sections: sections, clipped: clipped,
        width: document.documentElement.scrollWidth, viewport: window.innerWidth};
"""


def chromium_available() -> bool:
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


def inspect_html(path: str | Path, screenshot: str | Path | None = None) -> dict[str, Any]:
    """Open ``path`` in headless Chromium; return images (alt, ok), sections (title, blocks)."""
    if not chromium_available():
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument("--window-size=1280,2000")
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
        driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.get(Path(path).resolve().as_uri())
            result: dict[str, Any] = driver.execute_script(_INSPECT)
            if screenshot is not None:
                driver.save_screenshot(str(screenshot))
        finally:
            driver.quit()
    return result


def assert_report_renders(path: str | Path, *, min_images: int = 1) -> dict[str, Any]:
    """Every image loads, no section is empty, neither the page nor a table overflows
    sideways."""
    seen = inspect_html(path)
    broken = [i["alt"] for i in seen["images"] if not i["ok"]]
    empty = [s["title"] for s in seen["sections"] if s["blocks"] == 0]
    assert len(seen["images"]) >= min_images, f"{path}: {len(seen['images'])} images"
    assert not broken, f"{path}: images that did not load: {broken}"
    assert not empty, f"{path}: empty sections: {empty}"
    assert seen["width"] <= seen["viewport"] + 1, f"{path}: page wider than the window"
    assert not seen["clipped"], f"{path}: tables cut off (scroll sideways): {seen['clipped']}"
    return seen
