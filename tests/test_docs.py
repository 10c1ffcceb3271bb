"""README.md and docs/ stay true: every Python block runs (the blocks of a page in order, as one
script, in an empty folder), the README stays one page, and the pages state current facts."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_every_python_block_of_the_page_runs(page, tmp_path):
    script = "\n\n".join(python_blocks(page))
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, f"{page.name}:\n{out.stderr[-3000:]}"


def test_the_readme_is_one_page_and_links_to_pages_that_exist():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / link).is_file(), link
    for page in ("results", "benchmarks", "tasks", "data", "training", "design"):
        assert (ROOT / "docs" / f"{page}.md").is_file(), page


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_state_current_facts(page):
    """No commit hashes, no history words; a date only as "measured on <date>"."""
    text = page.read_text()
    history = re.findall(r"\b(re-measured|earlier version|used to be|no longer)\b", text, re.IGNORECASE)
    assert not history, f"{page.name}: {history}"
    hashes = [
        h for h in re.findall(r"\b[0-9a-f]{7,40}\b", text) if re.search(r"[a-f]", h) and re.search(r"\d", h)
    ]
    assert not hashes, f"{page.name}: commit-like {hashes}"
    for match in re.finditer(r"\b20\d\d-\d\d-\d\d\b", text):
        before = text[max(0, match.start() - 20) : match.start()].lower()
        assert "measured on" in before, f"{page.name}: a date outside 'measured on <date>': {match.group()}"
