from underfire.plotting import new_figure, save_figure
from underfire.report import Report


def test_report_writes_markdown_and_self_contained_html(tmp_path):
    fig = new_figure(2, 2)
    fig.subplots().plot([0, 1], [1, 0])
    png = save_figure(fig, tmp_path / "figures" / "line.png")
    report = Report("Title <x>")
    report.section("Numbers").text("Some **bold** text.\n\n- a\n- b").table(
        [{"eps": 0.1, "accuracy": 0.51234}]
    )
    report.figure(png, "a line")
    md, html = report.write(tmp_path)
    markdown = md.read_text()
    assert (
        "| eps | accuracy |" in markdown
        and "| 0.100 | 0.512 |" in markdown  # one number of decimals per column
        and "](figures/line.png)" in markdown
    )
    page = html.read_text()
    assert (
        "data:image/png;base64," in page
        and "<strong>bold</strong>" in page
        and "Title &lt;x&gt;" in page
    )
    assert "<li>a</li>" in page


def test_text_columns_align_left_and_number_columns_right(tmp_path):
    report = Report("t").table(
        [{"model": "normal", "accuracy": 0.9, "held": True}, {"model": "gradreg", "accuracy": 1}]
    )
    _, html = report.write(tmp_path)
    page = html.read_text()
    assert '<th class="text">model</th><th>accuracy</th><th class="text">held</th>' in page
    assert '<td class="text">normal</td><td>0.900</td><td class="text">True</td>' in page
    assert "th.text, td.text { text-align: left; }" in page


def test_single_star_emphasis_renders_as_em_but_not_in_code_or_arithmetic(tmp_path):
    report = Report("t").text(
        "Per layer: *amplification* is a ratio, *restored (top k units)* a share; "
        "`*literal*` stays code, 2*3*4 stays arithmetic and a * b * c a product; **bold**."
    )
    _, page = report.write(tmp_path)
    html = page.read_text()
    assert "<em>amplification</em>" in html and "<em>restored (top k units)</em>" in html
    assert "<code>*literal*</code>" in html
    assert "2*3*4" in html and "a * b * c" in html
    assert "<strong>bold</strong>" in html
    assert html.count("<em>") == 2
