"""Both test trees run under the root conftest's thread guard.

The guard (``no_leftover_threads`` in ``conftest.py``) is what makes "threads
you start are joined, actors you start are stopped" a checked rule; a test
tree that lost it would let a leak pass in silence.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREES = ("tests", "properties")
GUARD = "no_leftover_threads"

# Collects one module of each tree and prints, per tree, how many of its tests
# lack the guard and how many there are.
_PROBE = """
import sys
import pytest

class Probe:
    def pytest_collection_modifyitems(self, items):
        for tree in {trees!r}:
            mine = [i for i in items if i.nodeid.startswith(tree + "/")]
            bare = [i.nodeid for i in mine if {guard!r} not in i.fixturenames]
            print("TREE", tree, len(mine), len(bare), bare[:3])

args = ["--collect-only", "-q", "-p", "no:randomly", *sys.argv[1:]]
sys.exit(pytest.main(args, plugins=[Probe()]))
"""


def test_the_guard_covers_every_test_of_both_trees() -> None:
    modules = [str(sorted((ROOT / tree).glob("test_*.py"))[0].relative_to(ROOT)) for tree in TREES]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(trees=TREES, guard=GUARD), *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = {}
    for line in done.stdout.splitlines():
        if line.startswith("TREE "):
            _, tree, count, bare, sample = line.split(" ", 4)
            found[tree] = (int(count), int(bare), sample)
    for tree in TREES:
        count, bare, sample = found[tree]
        assert count > 0, f"no test of {tree}/ was collected"
        assert bare == 0, f"{bare} test(s) of {tree}/ run without {GUARD}: {sample}"
