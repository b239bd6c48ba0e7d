"""The documentation's relative links: every link and image in README.md and docs/*.md names a
file of the checkout, and a link to a heading (`file.md#anchor`) names a heading that exists, so
moving a section or a file cannot leave a reader at a dead end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def links(text: str) -> list[str]:
    """The targets of the markdown links and images outside fenced code blocks (a link whose
    text is a code span, [`file`](file), counts)."""
    return LINK.findall(FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings: lower case, punctuation dropped, spaces
    to hyphens, a repeated heading numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in links(doc.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ... not checked here
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_check_sees_links_and_anchors(tmp_path: Path) -> None:
    """The check itself: a link in a code block is no link, and anchors follow GitHub's rule."""
    doc = tmp_path / "a.md"
    doc.write_text("# Which system to use, and why\n\n## A §1 (x)\n\n[b](b.md) ![i](i.png)\n```\n[c](c.md)\n```\n")
    assert links(doc.read_text()) == ["b.md", "i.png"]
    assert anchors(doc) == {"which-system-to-use-and-why", "a-1-x"}


CITE = re.compile(r"design(?:\.md)?`?,?\s*((?:§\s*\d+(?:\.\d+)*(?:,\s*)?)+)")


def design_sections() -> set[str]:
    """The numbers of docs/design.md's sections and subsections ("9", "9.1", ...)."""
    text = (ROOT / "docs" / "design.md").read_text()
    return set(re.findall(r"^#{2,4}\s+(\d+(?:\.\d+)*)\s", text, re.M))


def test_every_citation_of_a_design_section_names_one() -> None:
    """`docs/design.md §N` in the code, tests, docs, recipes and benchmarks names a section
    that exists, so renumbering the design cannot leave a citation pointing nowhere."""
    sections = design_sections()
    assert {"1", "9", "9.1", "11"} <= sections
    files = [ROOT / "README.md"] + [
        p
        for folder in ("src", "tests", "docs", "recipes", "bench")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in (".py", ".md", ".toml", ".sh")
    ]
    wrong = []
    for path in files:
        for group in CITE.findall(path.read_text(errors="replace")):
            for number in re.findall(r"§\s*(\d+(?:\.\d+)*)", group):
                if number not in sections:
                    wrong.append(f"{path.relative_to(ROOT)}: §{number}")
    assert not wrong, "citations of docs/design.md sections that do not exist: " + ", ".join(sorted(set(wrong)))
