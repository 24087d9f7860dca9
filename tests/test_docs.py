"""The docs keep their word: every ```python block in README.md and docs/ runs, each
in a fresh interpreter; every "rule N" the repository cites is one of the
guarantees docs/guarantees.md numbers; docs/api.md shows every public name,
method, property and parameter, with the code's defaults; and docs/errors.md
draws every error where the code puts it.

A guide whose example no longer runs misleads the reader it is written for, and so
does a citation the reader cannot look up; this keeps both honest as the code moves.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import importlib
import inspect
import math
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

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


# --- the API reference covers the API --------------------------------------------------
#
# docs/api.md is checked against the code, read at test time (so a new option, class or
# method is checked the day it lands): every public name is mentioned; every public class
# has a section (a heading that names it in backticks) naming each public method,
# property and attribute; every public function and method shows its signature there,
# with every parameter, in its kind (positional, keyword-only), with the code's default.

API = ROOT / "docs" / "api.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)
SPAN = re.compile(r"`([^`]+)`")
HEADING_LINE = re.compile(r"^(#{1,6}) (.+)$", re.M)


def _public_modules() -> dict[str, Any]:
    """The modules whose ``__all__`` is public API, by the name api.md uses for them."""
    import actors
    import actors.testing
    import transport

    return {"actors": actors, "actors.testing": actors.testing, "transport": transport}


def _prose_and_code(text: str) -> tuple[str, list[str]]:
    """``text`` without its fenced blocks, and the code chunks a signature may start:
    inline code spans and the lines of fenced blocks that are not examples."""
    chunks: list[str] = []
    for lang, body in FENCE.findall(text):
        if lang != "python":  # examples call things; they do not declare them
            chunks.extend(line.strip() for line in body.splitlines())
    prose = FENCE.sub("", text)
    chunks.extend(" ".join(span.split()) for span in SPAN.findall(prose))  # may wrap lines
    return prose, chunks


def _sections(text: str) -> list[tuple[str, str]]:
    """Each heading (outside fenced blocks) and the text under it, to the next
    heading of the same or a higher level."""
    # Fenced blocks blanked out, keeping every offset: a "# comment" is no heading.
    blanked = FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    heads = [(m.start(), len(m.group(1)), m.group(2)) for m in HEADING_LINE.finditer(blanked)]
    found = []
    for i, (start, level, title) in enumerate(heads):
        end = next((s for s, lv, _ in heads[i + 1 :] if lv <= level), len(text))
        found.append((title, text[start:end]))
    return found


def _section_of(text: str, name: str) -> str | None:
    """The text under the first heading that names ``name`` in backticks."""
    for title, body in _sections(text):
        if f"`{name}`" in title:
            return body
    return None


def _names_in(chunks: list[str]) -> set[str]:
    """The names code chunks start with: `name`, `name(...)`, `.name`, `Class.name(...)`."""
    names = set()
    for chunk in chunks:
        match = re.match(r"(?:\w+)?\.?(\w+)", chunk.lstrip("."))
        if match:
            names.add(match.group(0).rsplit(".", 1)[-1])
            names.add(re.match(r"\w+", chunk.lstrip(".")).group(0))  # type: ignore[union-attr]
    return names


def _signature_text(chunks: list[str], owner: str | None, name: str) -> str | None:
    """The parameter list that declares ``name(...)`` in ``chunks``: a chunk that
    starts ``name(``, ``.name(`` or ``Owner.name(``; None if none does. Of several
    (a declaration, and prose that calls ``name()``), the longest list is the
    declaration."""
    prefixes = (f"{name}(", f".{name}(", *([f"{owner}.{name}("] if owner else []))
    found = None
    for at, chunk in enumerate(chunks):
        if not chunk.startswith(prefixes):
            continue
        # A signature broken over lines of a fenced block goes on in the next chunks.
        text = " ".join(chunks[at:])
        start, depth = text.index("("), 0
        for end in range(start, len(text)):
            depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(text[end], 0)
            if depth == 0:
                params = text[start + 1 : end]
                if found is None or len(params) > len(found):
                    found = params
                break
    return found


def _split_params(params: str) -> list[str]:
    """Split a parameter list at its top-level commas."""
    parts, depth, current, quote = [], 0, "", ""
    for char in params:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    if current.strip():
        parts.append(current.strip())
    return parts


_MISSING = object()


def _documented(params: str) -> dict[str, tuple[str, str | None]]:
    """A documented parameter list: each name, its kind, and its default as written."""
    found: dict[str, tuple[str, str | None]] = {}
    keyword_only = False
    for part in _split_params(params):
        if part == "*":
            keyword_only = True
        elif part == "/":
            continue
        elif part.startswith("**"):
            found[part[2:].partition(":")[0].strip()] = ("**", None)
        elif part.startswith("*"):
            found[part[1:].partition(":")[0].strip()] = ("*", None)
            keyword_only = True
        else:
            name, eq, default = part.partition("=")
            kind = "keyword-only" if keyword_only else "positional"
            found[name.strip()] = (kind, default.strip() if eq else None)
    return found


_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword-only",
    inspect.Parameter.VAR_POSITIONAL: "*",
    inspect.Parameter.VAR_KEYWORD: "**",
}


@functools.cache
def _default_namespace() -> dict[str, Any]:
    namespace: dict[str, Any] = {"inf": math.inf}
    for module in _public_modules().values():
        namespace.update({name: getattr(module, name) for name in module.__all__})
    return namespace


def _signature_problems(where: str, func: Any, documented: str) -> list[str]:
    """How a documented parameter list differs from the code's signature."""
    problems = []
    code = [
        p
        for p in inspect.signature(func).parameters.values()
        if p.name not in ("self", "cls") and not p.name.startswith("_")
    ]
    doc = _documented(documented)
    for param in code:
        if param.name not in doc:
            problems.append(f"{where}: parameter `{param.name}` is not documented")
            continue
        kind, written = doc[param.name]
        if kind != _KINDS[param.kind]:
            problems.append(f"{where}: `{param.name}` is {_KINDS[param.kind]}, documented {kind}")
        has_default = param.default is not inspect.Parameter.empty
        if has_default and written is None and kind not in ("*", "**"):
            problems.append(f"{where}: `{param.name}` has a default ({param.default!r}), not shown")
        elif not has_default and written is not None:
            problems.append(f"{where}: `{param.name}` has no default, documented `={written}`")
        elif has_default and written is not None:
            try:
                value = eval(written, _default_namespace())  # our own docs, read as Python
            except Exception as exc:  # reported as a problem
                problems.append(f"{where}: `{param.name}={written}` does not read: {exc!r}")
                continue
            if value != param.default or isinstance(value, bool) != isinstance(param.default, bool):
                problems.append(
                    f"{where}: `{param.name}` defaults to {param.default!r}, documented {written}"
                )
    names = {p.name for p in code}
    problems.extend(
        f"{where}: documents a parameter `{name}` the code does not have"
        for name in doc
        if name not in names
    )
    positional = [p.name for p in code if _KINDS[p.kind] == "positional"]
    doc_positional = [n for n, (k, _) in doc.items() if k == "positional" and n in positional]
    if doc_positional != positional:
        problems.append(f"{where}: positional order {doc_positional}, code {positional}")
    return problems


def _own_members(cls: type) -> dict[str, Any]:
    """The public members a postroom class defines, or inherits from another
    postroom class: methods, properties, fields, enum members, and the
    attributes its methods assign (``self.name = ...``)."""
    members: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        if not base.__module__.startswith(("actors", "transport")):
            continue
        for name, value in vars(base).items():
            if not name.startswith("_"):
                members[name] = value
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(base)))
        except (OSError, TypeError):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and not node.attr.startswith("_")
            ):
                members.setdefault(node.attr, None)
    if issubclass(cls, enum.Enum):
        members.update({name: member for name, member in cls.__members__.items()})
    return members


def _is_routine(value: Any) -> bool:
    return isinstance(value, staticmethod | classmethod) or inspect.isfunction(value)


@functools.cache
def _postroom_classes() -> dict[str, list[type]]:
    """Every class defined in a postroom module, by name (to resolve annotations)."""
    import actors
    import transport

    found: dict[str, list[type]] = {}
    for package in (actors, transport):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue  # running it is its import
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if inspect.isclass(value) and value.__module__ == module.__name__:
                    found.setdefault(value.__name__, []).append(value)
    return found


def _annotation_classes(annotation: Any, classes: dict[str, list[type]]) -> list[type]:
    """The postroom classes an annotation (a string, under postponed evaluation) names."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return [c for word in re.findall(r"\w+", text) for c in classes.get(word, [])]


@functools.cache
def _public_api() -> tuple[dict[str, tuple[str, Any]], list[type]]:
    """Every public name (``module.name`` -> (module, object)), and every public
    class: those the public modules export, and those the public API returns (by
    a method's or property's annotation), which users hold and call just the same."""
    names: dict[str, tuple[str, Any]] = {}
    classes: list[type] = []
    for module_name, module in _public_modules().items():
        for name in module.__all__:
            value = getattr(module, name)
            names[f"{module_name}.{name}"] = (module_name, value)
            if inspect.isclass(value) and value not in classes:
                classes.append(value)
    every = _postroom_classes()
    queue = list(classes)
    while queue:
        cls = queue.pop()
        for value in _own_members(cls).values():
            target = value.fget if isinstance(value, property) else value
            if isinstance(target, staticmethod | classmethod):
                target = target.__func__
            if not inspect.isfunction(target):
                continue
            returned = inspect.signature(target).return_annotation
            for found in _annotation_classes(returned, every):
                if found not in classes and not issubclass(found, BaseException):
                    classes.append(found)
                    queue.append(found)
    return names, classes


def _made_only_by_postroom(cls: type, public: set[type], every: dict[str, list[type]]) -> bool:
    """Whether users cannot make one: its constructor takes a private postroom type
    (a handle takes the job's state), or it is not importable from a public module."""
    if cls not in public:
        return True
    init = vars(cls).get("__init__")
    if init is None or not inspect.isfunction(init):
        return False
    for param in inspect.signature(init).parameters.values():
        if any(c not in public for c in _annotation_classes(param.annotation, every)):
            return True
    return False


def _name_problems(text: str, names: dict[str, tuple[str, Any]]) -> list[str]:
    """Public names not mentioned, and module functions without their signature."""
    problems = []
    mentioned = _names_in(_prose_and_code(text)[1])
    for full, (module_name, value) in names.items():
        name = full.rsplit(".", 1)[1]
        if name not in mentioned:
            problems.append(f"`{full}` is not mentioned")
        if not inspect.isfunction(value):
            continue
        section = text if module_name == "actors" else _section_of(text, module_name)
        if section is None:
            problems.append(f"no section for `{module_name}` (a heading naming it)")
            continue
        params = _signature_text(_prose_and_code(section)[1], None, name)
        if params is None:
            problems.append(f"`{full}` has no signature in its section")
        else:
            problems.extend(_signature_problems(f"`{full}`", value, params))
    return problems


def _class_problems(cls: type, section: str, made_by_postroom: bool) -> list[str]:
    """What a class's section leaves out or gets wrong."""
    problems = []
    local = _prose_and_code(section)[1]
    local_names = _names_in(local)
    title = cls.__name__
    params = _signature_text(local, None, title)
    if params is not None:
        problems.extend(_signature_problems(f"`{title}()`", cls, params))
    elif not (
        issubclass(cls, enum.Enum)
        or getattr(cls, "_is_protocol", False)
        or dataclasses.is_dataclass(cls)  # its fields are named, as members
        or typing.is_typeddict(cls)  # its keys are named, as members
        or made_by_postroom
    ):
        problems.append(f"`{title}(...)`: the constructor is not shown")
    for name, value in sorted(_own_members(cls).items()):
        where = f"`{title}.{name}`"
        if name not in local_names:
            problems.append(f"{where} is not named in the `{title}` section")
        if _is_routine(value):
            params = _signature_text(local, title, name)
            if params is None:
                problems.append(f"{where} has no signature in the `{title}` section")
            else:
                problems.extend(_signature_problems(where, getattr(cls, name), params))
    return problems


def api_doc_problems(text: str) -> list[str]:
    """Everything public that ``text`` (an api.md) leaves out or gets wrong."""
    names, classes = _public_api()
    problems = _name_problems(text, names)
    every = _postroom_classes()
    exported = {v for _, v in names.values() if inspect.isclass(v)}
    for cls in sorted(classes, key=lambda c: c.__name__):
        if issubclass(cls, BaseException):
            continue  # docs/errors.md documents them; their names are checked above
        section = _section_of(text, cls.__name__)
        if section is None:
            problems.append(f"class `{cls.__name__}` has no section (a heading naming it)")
        else:
            made = _made_only_by_postroom(cls, exported, every)
            problems.extend(_class_problems(cls, section, made))
    return problems


def test_the_api_reference_covers_the_api() -> None:
    problems = api_doc_problems(API.read_text())
    assert not problems, "docs/api.md is behind the code:\n" + "\n".join(problems)


def _public_names() -> list[str]:
    return sorted(_public_api()[0])


@pytest.mark.parametrize("full", _public_names())
def test_the_check_misses_no_public_name(full: str) -> None:
    """Take any public name out of the page (every code span it starts) and the
    check names it."""
    name = full.rsplit(".", 1)[1]
    text = re.sub(rf"`(\.?(?:\w+\.)?){name}\b", rf"`\1gone_{name}", API.read_text())
    problems = api_doc_problems(text)
    assert any(f"{name}`" in p or f"`{name}" in p for p in problems), problems


CHANGES = [
    # (what is changed in docs/api.md, into what, a problem the check must report)
    ("queues=None, name=None,", "queues=None,",
     "`Scheduler()`: parameter `name` is not documented"),
    ("metrics=True, registry=None,", "metrics=True,", "`Scheduler()`: parameter `registry`"),
    ("| `handler(name, *, max_retries=None,", "| `handler(name, *, max_retries=0,",
     "`Scheduler.handler`: `max_retries` defaults to None, documented 0"),
    ("**options: SubmitOptions) -> JobHandle` | submit a job;",
     "**opts: SubmitOptions) -> JobHandle` | submit a job;",
     "`Scheduler.submit`: parameter `options` is not documented"),
    ("| `cron(handler,", "| `crontab(handler,", "`Scheduler.cron` has no signature"),
    ("| `wall() -> float`", "| `walls() -> float`", "`Clock.wall` has no signature"),
    ("`resize(workers, *, queue=\"default\")`", "`resize(workers, queue=\"default\")`",
     "`Scheduler.resize`: `queue` is keyword-only, documented positional"),
    ("`shutdown(graceful=True, timeout=30.0,", "`shutdown(graceful=True, timeout=30,",
     None),  # 30 == 30.0: the same default
    ("`shutdown(graceful=True, timeout=30.0,", "`shutdown(graceful=True, timeout=60.0,",
     "`Scheduler.shutdown`: `timeout` defaults to 30.0, documented 60.0"),
    ("`schedules() -> list[ScheduleInfo]`", "`schedules(limit) -> list[ScheduleInfo]`",
     "`Scheduler.schedules`: documents a parameter `limit` the code does not have"),
    ("### `QueueStats`", "### Queue figures", "class `QueueStats` has no section"),
    ("`ManualClock(start=0.0, *, wall=1_767_225_600.0)`", "`ManualClock(start=0.0)`",
     "`ManualClock()`: parameter `wall` is not documented"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "problem"), CHANGES, ids=[c[0] for c in CHANGES])
def test_the_check_finds_a_wrong_page(old: str, new: str, problem: str | None) -> None:
    text = API.read_text()
    assert text.count(old) == 1, f"docs/api.md no longer has {old!r}: update this case"
    problems = api_doc_problems(text.replace(old, new))
    if problem is None:
        assert problems == []
    else:
        assert any(p.startswith(problem) for p in problems), problems


# --- the errors page draws the tree the code has ------------------------------------------

ERRORS = ROOT / "docs" / "errors.md"
TREE_LINE = re.compile(r"^(?:[│ ]*(?:├── |└── ))?(\w+)(?: \(([\w, ]+)\))?", re.M)


def _documented_tree(text: str) -> dict[str, tuple[str | None, set[str]]]:
    """Each error in the page's first tree: its parent, and the built-ins it also is."""
    tree = FENCE.search(text)
    assert tree is not None, "docs/errors.md has no tree"
    found: dict[str, tuple[str | None, set[str]]] = {}
    stack: list[str] = []
    for line in tree.group(2).splitlines():
        match = TREE_LINE.match(line)
        if match is None or (match.start(1) and not re.search(r"[├└]── $", line[: match.start(1)])):
            continue  # a description carried onto the next line
        depth = match.start(1) // 4
        del stack[depth:]
        found[match.group(1)] = (stack[-1] if stack else None, set(
            (match.group(2) or "").replace(" ", "").split(",")) - {""})  # fmt: skip
        stack.append(match.group(1))
    return found


def errors_doc_problems(text: str) -> list[str]:
    """Where a docs/errors.md text leaves out an error, or draws it elsewhere in
    the tree than the code puts it."""
    import actors

    problems = []
    tree = _documented_tree(text)
    table = FENCE.sub("", text)
    errors = {
        name: value
        for name in actors.__all__
        if inspect.isclass(value := getattr(actors, name))
        and issubclass(value, actors.SchedulerError)
    }
    for name, cls in sorted(errors.items()):
        if name not in tree:
            problems.append(f"`{name}` is not in the tree")
        else:
            ours = [b.__name__ for b in cls.__bases__ if issubclass(b, actors.SchedulerError)]
            builtins = {b.__name__ for b in cls.__bases__ if b.__name__ not in (*ours, "Exception")}
            parent, also = tree[name]
            if parent != (ours[0] if ours else None):
                problems.append(f"`{name}` is drawn under {parent}, but derives from {ours}")
            if also != builtins:
                problems.append(f"`{name}` is drawn as also {sorted(also)}, not {sorted(builtins)}")
        if f"`{name}`" not in table:
            problems.append(f"`{name}` is not explained outside the tree")
    unknown = [n for n in tree if n not in errors]
    problems.extend(f"the tree draws `{n}`, which is no public error" for n in unknown)
    return problems


def test_the_errors_page_draws_every_error_where_the_code_has_it() -> None:
    problems = errors_doc_problems(ERRORS.read_text())
    assert not problems, "docs/errors.md is behind the code:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("├── UnknownQueue (KeyError) ", "├── ", "`UnknownQueue` is not in the tree"),
        ("├── ScheduleNotFound (KeyError) ", "│   ├── ScheduleNotFound (KeyError)",
         "`ScheduleNotFound` is drawn under JobNotFound"),
        ("├── UnknownQueue (KeyError) ", "├── UnknownQueue (ValueError)",
         "`UnknownQueue` is drawn as also ['ValueError']"),
        ("| `ScheduleNotFound` |", "| ScheduleNotFound |",
         "`ScheduleNotFound` is not explained outside the tree"),
    ],
)  # fmt: skip
def test_the_errors_check_finds_a_wrong_page(old: str, new: str, problem: str) -> None:
    text = ERRORS.read_text()
    assert text.count(old) == 1, f"docs/errors.md no longer has {old!r}: update this case"
    problems = errors_doc_problems(text.replace(old, new))
    assert any(p.startswith(problem) for p in problems), problems


# --- the layout the README and the guide show is the package's ---------------------------

ENTRY = re.compile(r"^( {0,2})([\w.]+/?) ", re.M)
"""A line of a layout: a top-level entry, or (two spaces in) one inside ``actors/``;
a deeper indent carries a description on."""


def layout_problems(text: str, where: str) -> list[str]:
    """Rooms and modules of ``actors/`` the page's layout leaves out or still
    shows after they went: one line each, indented under ``actors/``."""
    start = text.find("## Layout\n")
    block = FENCE.search(text, start) if start >= 0 else None
    if block is None:
        return [f"{where} has no layout block"]
    shown = {name for indent, name in ENTRY.findall(block.group(2)) if indent}
    package = ROOT / "actors"
    present = {p.name + "/" for p in package.iterdir() if (p / "__init__.py").is_file()}
    present |= {p.name for p in package.glob("*.py")}
    problems = [f"{where}: the layout leaves out actors/{n}" for n in sorted(present - shown)]
    gone = sorted(shown - present)
    problems += [f"{where}: the layout shows actors/{n}, which is gone" for n in gone]
    tops = {name for indent, name in ENTRY.findall(block.group(2)) if not indent}
    problems += [f"{where}: the layout shows {n}, which is gone" for n in sorted(tops)
                 if not (ROOT / n).exists()]  # fmt: skip
    return problems


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "docs" / "index.md"], ids=_where)
def test_the_layout_shows_each_room_of_the_package(page: Path) -> None:
    problems = layout_problems(page.read_text(), _where(page))
    assert not problems, "\n".join(problems)


def test_the_layout_check_finds_a_room_left_out_or_gone() -> None:
    text = (ROOT / "README.md").read_text()
    left_out = re.sub(r"^  _jobs/ .*\n(?: {20,}.*\n)*", "", text, flags=re.M)
    assert layout_problems(left_out, "README.md") == [
        "README.md: the layout leaves out actors/_jobs/"
    ]
    gone = text.replace("  _log.py ", "  _logs.py ")
    assert layout_problems(gone, "README.md") == [
        "README.md: the layout leaves out actors/_log.py",
        "README.md: the layout shows actors/_logs.py, which is gone",
    ]
