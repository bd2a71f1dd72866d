"""The front door: a README of one screen's findings and at most 150 lines, and pages whose links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def test_the_readme_fits_in_150_lines() -> None:
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 150, f"README.md has {lines} lines; move detail to docs/"


def test_the_readme_leads_to_every_page_of_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in readme, f"the README does not link docs/{page.name}"


def _local_links(page: Path) -> list[tuple[str, Path, str]]:
    """Every link of ``page`` (outside code blocks) to this repository: (as written, the file, the anchor)."""
    found = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        found.append((target, (page.parent / path).resolve() if path else page, anchor))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_local_link_points_at_a_file_that_exists(page: Path) -> None:
    broken = [target for target, dest, _ in _local_links(page) if not dest.exists()]
    assert not broken, f"{page.relative_to(ROOT)}: links to no file: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_anchor_names_a_heading_of_its_page(page: Path) -> None:
    broken = [target for target, dest, anchor in _local_links(page)
              if anchor and dest.suffix == ".md" and dest.is_file() and anchor not in _anchors(dest)]
    assert not broken, f"{page.relative_to(ROOT)}: links to no heading: {broken}"
