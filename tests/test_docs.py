"""The docs keep their word: every ```python block in README.md and docs/ runs, each
in a fresh interpreter, and every "rule N" the repository cites is one of the
guarantees docs/guarantees.md numbers.

A guide whose example no longer runs misleads the reader it is written for, and so
does a citation the reader cannot look up; this keeps both honest as the code moves.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _examples() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for number, code in enumerate(BLOCK.findall(page.read_text()), 1):
            found.append((f"{page.relative_to(ROOT)}#{number}", code))
    return found


EXAMPLES = _examples()


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_example_runs(where: str, code: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-2000:]}"


# --- citations of the guarantees ------------------------------------------------------
#
# Code, tests and guides cite postroom's guarantees as "rule N"; the numbers are the
# headings of docs/guarantees.md. A citation that page does not define, or one that
# points at a page outside the repository, sends the reader nowhere.

GUARANTEES = ROOT / "docs" / "guarantees.md"
CITING = [
    ROOT / "README.md",
    *(
        path
        for folder in ("actors", "transport", "tests", "properties", "docs", "bench", "examples")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".md") and "__pycache__" not in path.parts
    ),
]
HEADING = re.compile(r"^## (\d+)\. (.+)$", re.M)
CITE = re.compile(r"\b(?:rule|guarantee)s?\s+(?=\d)", re.I)
NUMBER = re.compile(r"(\d+)(?:\s*\([^()\n]*\))?")
"""A cited number, with the gloss some citations give it: "rules 1 (exclusion) and 2"."""
SEPARATOR = re.compile(r"[\s#]*(,(?:[\s#]*(?:and|or)\b)?|and\b|or\b|[-\u2013]|to\b)[\s#]*(?=\d)")
"""Between two numbers of one citation, also across a comment's line break."""
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]*)\)")
UNKNOWN_PAGE = re.compile(r"\bD[E]SIGN\b")  # [E]: so that this line does not match itself


def _anchor(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, no punctuation, hyphens for spaces."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _defined() -> dict[int, str]:
    """Each guarantee's number and the anchor of its heading."""
    text = GUARANTEES.read_text()
    return {int(n): _anchor(f"{n}. {title}") for n, title in HEADING.findall(text)}


def cited_numbers(text: str) -> list[int]:
    """Every rule number cited in ``text``: "rule 3", "rules 1, 2 and 4", "rules 1-5"."""
    found = []
    for match in CITE.finditer(text):
        at = match.end()
        previous, dash = None, False
        while (number := NUMBER.match(text, at)) is not None:
            value = int(number.group(1))
            ranged = dash and previous is not None and previous < value
            found.extend(range(previous + 1, value + 1) if ranged else [value])
            previous, at = value, number.end()
            separator = SEPARATOR.match(text, at)
            if separator is None:
                break
            dash = separator.group(1).strip() in ("-", "\u2013", "to")
            at = separator.end()
    return found


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_guarantees_are_numbered_in_order_without_gaps() -> None:
    numbers = list(_defined())
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 13


def test_citation_parsing() -> None:
    text = (
        "(rule 3; see) Rules 1 (exclusion) and 2, rules 4,\n    # 5 and 7, rules 8\u201310, rule x"
    )
    assert cited_numbers(text) == [3, 1, 2, 4, 5, 7, 8, 9, 10]


@pytest.mark.parametrize("path", CITING, ids=_where)
def test_rule_citations_point_at_the_guarantees(path: Path) -> None:
    """Every rule a file cites is one docs/guarantees.md defines, and the file says
    where the rules are: code says ``docs/guarantees.md``; a page links each
    citation to the guarantee's heading."""
    text = path.read_text()
    defined = _defined()
    assert not UNKNOWN_PAGE.search(text), (
        f"{_where(path)} refers to a design page that is not in the repository: "
        "cite docs/guarantees.md"
    )
    numbers = cited_numbers(text)
    unknown = sorted(set(numbers) - set(defined))
    assert not unknown, (
        f"{_where(path)} cites rule(s) {unknown}, which docs/guarantees.md does not define"
    )
    if not numbers:
        return
    if path.suffix == ".py":
        assert "docs/guarantees.md" in text, (
            f"{_where(path)} cites rules but never says they are docs/guarantees.md's"
        )
        return
    # A page: each citation is a link to the heading of the rule it names (on
    # docs/guarantees.md itself, to the heading on the same page).
    for label, target in LINK.findall(text):
        cited = cited_numbers(label)
        if not cited:
            continue
        page, _, anchor = target.partition("#")
        here = path == GUARANTEES and page == ""
        assert here or page.endswith("guarantees.md"), (
            f"{_where(path)}: [{label}] links to {target}"
        )
        assert anchor in (defined[n] for n in cited), (
            f"{_where(path)}: [{label}] links to #{anchor}, not to the rule it names"
        )
    # Only docs/guarantees.md may name rules in plain words ("rule 3 is guarantee 3").
    bare = [] if path == GUARANTEES else cited_numbers(LINK.sub("", text))
    assert not bare, f"{_where(path)} cites rule(s) {bare} without a link to docs/guarantees.md"


CHECKED_BY = re.compile(
    r"^- `((?:tests|properties|bench)/[\w/]+\.py)`(?: and `([\w/]+\.py)`)?: (.*)$", re.M
)


def test_the_guarantees_name_real_tests() -> None:
    """Each "Checked by" entry names a file that exists and names in it (tests, rule
    checks, seeded bugs) that it holds: a renamed test must not leave a dead entry."""
    entries = CHECKED_BY.findall(GUARANTEES.read_text())
    assert len(entries) >= 30
    for first, second, names in entries:
        for where in filter(None, (first, second)):
            path = ROOT / where
            assert path.is_file(), f"docs/guarantees.md names {where}, which does not exist"
            source = path.read_text()
            for name in re.findall(r"`(\w+)`", names):
                assert re.search(rf"\b{name}\b", source), (
                    f"docs/guarantees.md names {name} in {where}, which has no such name"
                )
