"""The HTML report as a person sees it, in headless Chromium: images load, sections have
content, tables keep one number of decimals per column."""

from __future__ import annotations

from pathlib import Path

from tests.browser import assert_report_renders, inspect_html
from underfire.plotting import new_figure, save_figure
from underfire.report import Report


def _report(tmp_path: Path) -> Path:
    fig = new_figure(3, 2)
    fig.subplots().plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "figures" / "line.png")
    report = Report("test report")
    report.section("Numbers").text("A table.").table(
        [{"model": "a", "acc": 0.91234, "loss": 12.3456}, {"model": "b", "acc": 0.5, "loss": 3.0}]
    )
    report.section("Figure").figure(tmp_path / "figures" / "line.png", "a line")
    return report.write(tmp_path)[1]


def test_report_renders_with_every_image_loaded(tmp_path: Path) -> None:
    page = _report(tmp_path)
    seen = assert_report_renders(page)
    assert [s["title"] for s in seen["sections"]] == ["Numbers", "Figure"]
    html = page.read_text()
    assert "<td>0.912</td>" in html and "<td>0.500</td>" in html and "<td>3.0</td>" in html


def test_browser_check_sees_a_broken_image_and_an_empty_section(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><h2>Empty</h2><h2>Img</h2><img alt='x' src='data:image/png;base64,AAAA'>"
        "</body></html>"
    )
    seen = inspect_html(page)
    assert [i["ok"] for i in seen["images"]] == [False]
    assert [s["blocks"] for s in seen["sections"]] == [0, 1]
