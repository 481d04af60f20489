"""The README's Python examples run as written (in a scratch folder)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks, "README has no Python example"
    namespace: dict = {}
    exec(compile("\n".join(blocks), str(README), "exec"), namespace)  # noqa: S102 - running the README is the test
    assert (tmp_path / "digits.pt").exists()
    assert namespace["maps"].shape == (64, 1, 8, 8)
    # the studies example: the rerun takes the classifier section from the part cache
    assert namespace["again"]["run"]["reused"] == ["classifier"]
    again, first = namespace["again"]["classifier"], namespace["results"]["classifier"]
    assert again["test_accuracy"] == first["test_accuracy"]
