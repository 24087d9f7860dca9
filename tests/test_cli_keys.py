"""``postroom keys DIR``: a keypair with the right modes, its public key printed,
an existing key refused without ``--force``, and every error one line with exit 2."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from actors.cli import main
from transport.security import load_public_keys, load_secret_key

ROOT = Path(__file__).resolve().parent.parent


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _printed_key(out: str) -> bytes:
    match = re.search(r"^public key\s+(\S{40})$", out, re.M)
    assert match, out
    return match[1].encode("ascii")


def test_keys_writes_a_keypair_with_safe_modes_and_prints_its_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "keys"
    assert main(["keys", str(folder), "--name", "node-1"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    public_path, secret_path = folder / "node-1.key", folder / "node-1.key_secret"
    assert _mode(folder) == 0o700
    assert _mode(secret_path) == 0o600
    assert _mode(public_path) == 0o644
    assert str(public_path) in captured.out
    assert str(secret_path) in captured.out
    public, _ = load_secret_key(secret_path)
    assert _printed_key(captured.out) == public
    assert load_public_keys(folder) == {public}
    # It says which file goes where.
    assert "copy node-1.key into the scheduler's keys directory" in captured.out
    assert "node-1.key_secret stays on this node" in captured.out


def test_keys_are_named_after_the_host_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", str(tmp_path)]) == 0
    host = socket.gethostname()
    assert (tmp_path / f"{host}.key").is_file()
    assert _mode(tmp_path / f"{host}.key_secret") == 0o600
    assert _printed_key(capsys.readouterr().out) == load_secret_key(
        tmp_path / f"{host}.key_secret"
    )[0]


def test_an_existing_key_is_refused_without_force_and_replaced_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", str(tmp_path), "--name", "n"]) == 0
    first = _printed_key(capsys.readouterr().out)
    secret_path = tmp_path / "n.key_secret"
    before = secret_path.read_bytes()

    assert main(["keys", str(tmp_path), "--name", "n"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert "exists" in captured.err
    assert "--force" in captured.err
    assert secret_path.read_bytes() == before  # untouched

    # Even a secret someone loosened comes back 0600.
    secret_path.chmod(0o644)
    assert main(["keys", str(tmp_path), "--name", "n", "--force"]) == 0
    second = _printed_key(capsys.readouterr().out)
    assert second != first
    assert load_secret_key(secret_path)[0] == second
    assert load_public_keys(tmp_path) == {second}
    assert _mode(secret_path) == 0o600
    assert _mode(tmp_path / "n.key") == 0o644


@pytest.mark.parametrize(
    ("name", "where", "says"),
    [
        ("a/b", "keys", "plain file name"),
        ("..", "keys", "file name"),
        ("", "keys", "non-empty"),
        ("n", "file/keys", "cannot write"),  # a directory under a regular file
        ("n", "file", "not a directory"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, where: str, says: str
) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    assert main(["keys", str(tmp_path / where), "--name", name]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("postroom keys: "), captured.err
    assert captured.err.count("\n") == 1, captured.err
    assert says in captured.err
    assert not list(tmp_path.rglob("*.key*"))


def _postroom(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_as_a_process(tmp_path: Path) -> None:
    folder = tmp_path / "node"
    done = _postroom("keys", str(folder), "--name", "worker")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert _mode(folder) == 0o700
    assert _mode(folder / "worker.key_secret") == 0o600
    assert _mode(folder / "worker.key") == 0o644
    assert _printed_key(done.stdout) == load_secret_key(folder / "worker.key_secret")[0]

    again = _postroom("keys", str(folder), "--name", "worker")
    assert again.returncode == 2
    assert again.stdout == ""
    assert again.stderr.count("\n") == 1, again.stderr
    assert "Traceback" not in again.stderr
