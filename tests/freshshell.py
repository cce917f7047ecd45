"""The environment of a fresh shell, to run commands the way a user pastes them.

Only PATH, HOME and LANG survive, as with `env -i`; PATH loses any virtualenv's bin
directory (a fresh shell has activated none), so `python` and `manage.py` get no help from
the test runner's interpreter. HITL_VAR_DIR keeps the private stack out of the real var/.
"""

from __future__ import annotations

import os
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
