"""The docs stand on their own (issue 21): every relative link in the shipped Markdown
points to a file that exists (and a `#anchor` to a heading in it), and nothing cites a
design document that does not ship."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = sorted(
    [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("*/README.md"),
     *ROOT.glob("config/*/README.md")]
)  # fmt: skip
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"(?ms)^```.*?^```")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_the_reference_ships() -> None:
    """docs/reference.md is there and the README links to it."""
    assert ROOT / "docs" / "reference.md" in PAGES
    assert "docs/reference.md" in links(ROOT / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    """Each relative link names an existing file; an anchor names a heading of its page."""
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_nothing_cites_the_design_document() -> None:
    """No shipped file (docs, configs, dashboards, code, benchmarks) cites DESIGN.md: the
    user-facing contract is docs/reference.md."""
    places = [ROOT / "README.md", ROOT / "docs", ROOT / "config", ROOT / "grafana",
              ROOT / "healthd", ROOT / "bench", ROOT / "Dockerfile"]  # fmt: skip
    files = [p for place in places for p in ([place] if place.is_file() else place.rglob("*"))]
    citing = [
        str(p.relative_to(ROOT))
        for p in files
        if p.is_file() and p.suffix in ("", ".md", ".py", ".yaml", ".json")
        and "DESIGN" in p.read_text(errors="replace")
    ]  # fmt: skip
    assert not citing
