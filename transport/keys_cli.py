"""The ``postroom keys DIR`` command: make a CURVE keypair for a node or a scheduler.

It writes ``NAME.key`` (public, 0644) and ``NAME.key_secret`` (secret, 0600) with
`transport.security.generate_keys`, then prints both paths, the public key and
where each file goes. ``NAME`` defaults to this machine's host name, so keys made
on several nodes do not collide in the scheduler's directory.

Exit codes: 0 done; 2 the command line is wrong, the name is not a plain file
name, a key of that name exists (``--force`` replaces it) or the files cannot be
written: one line on stderr says why, never a traceback.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any, TextIO

from actors._errors import InvalidArgument
from transport.security import (
    _PUBLIC_SUFFIX,
    _SECRET_SUFFIX,
    _check_name,
    generate_keys,
    load_secret_key,
)

__all__ = ["COMMAND", "FAILED", "add_command", "run"]

COMMAND = "keys"
"""The command this module adds and `run` runs."""

FAILED = 2
"""Exit code when no keypair was written (as argparse's for usage)."""


def add_command(commands: Any) -> None:
    """Add ``keys`` to ``commands`` (the root parser's subparsers)."""
    keys = commands.add_parser(
        COMMAND,
        help="make a CURVE keypair for a node or a scheduler",
        description="Write NAME.key (the public key, to copy to the other side) and "
        "NAME.key_secret (mode 0600, never leaves this machine) into DIR, made with "
        "mode 0700 if missing. A node's NAME.key goes into the scheduler's keys "
        "directory; a scheduler's NAME.key is every node's --server-key.",
    )
    keys.add_argument("directory", metavar="DIR", help="where to write the two files")
    keys.add_argument(
        "--name", metavar="NAME", help="the files' name, without a suffix (the host name)"
    )
    keys.add_argument(
        "--force", action="store_true", help="replace an existing keypair of that name"
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run ``postroom keys``; returns the exit code."""
    name = socket.gethostname() if args.name is None else args.name
    try:
        public_path, secret_path = _write(Path(args.directory), name, force=args.force)
        public, _ = load_secret_key(secret_path)
    except InvalidArgument as exc:
        err.write(f"postroom keys: {exc}\n")
        return FAILED
    out.write(
        f"public key file  {public_path}\n"
        f"secret key file  {secret_path}\n"
        f"public key       {public.decode('ascii')}\n"
        f"\n"
        f"For a node: copy {public_path.name} into the scheduler's keys directory "
        f"(listen(keys=...)); {secret_path.name} stays on this node (--key).\n"
        f"For a scheduler: give {public_path.name} to every node (--server-key); "
        f"{secret_path.name} stays with the scheduler.\n"
        f"Never copy a .key_secret file anywhere.\n"
    )
    return 0


def _write(directory: Path, name: str, *, force: bool) -> tuple[Path, Path]:
    _check_name(name)
    if directory.exists() and not directory.is_dir():
        msg = f"{directory} is not a directory"
        raise InvalidArgument(msg)
    if not force:
        # generate_keys refuses too, but in the API's words (overwrite=True);
        # a command-line user needs the flag's name.
        for path in (directory / f"{name}{_PUBLIC_SUFFIX}", directory / f"{name}{_SECRET_SUFFIX}"):
            if path.exists():
                msg = f"key file {path} exists; pass --force to replace it"
                raise InvalidArgument(msg)
    return generate_keys(directory, name, overwrite=force)
