#!/usr/bin/env python3
"""Django's manage.py, usable from a fresh shell in a checkout.

- Without Django on this interpreter, it runs again with the project's .venv/bin/python (made
  by `make install`, `make run` or `make test`).
- Without DATABASE_URL, it runs the command on the private development stack in var/ (or
  $HITL_VAR_DIR), as `make run` does, with development settings: see `hitl.devstack.manage`.
  With DATABASE_URL set, nothing is added: production still needs its SECRET_KEY.
"""

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"


def use_project_venv() -> None:
    """Re-run this command with .venv/bin/python, or exit with how to create it."""
    python = VENV / "bin" / "python"
    in_venv = Path(sys.prefix).resolve() == VENV.resolve()
    if not python.exists() or in_venv:
        where = "the project's .venv" if in_venv else sys.executable
        sys.exit(f"manage.py: Django is not installed in {where}: run `make install` first.")
    os.execv(python, [str(python), str(ROOT / "manage.py"), *sys.argv[1:]])  # noqa: S606


def main() -> None:
    if importlib.util.find_spec("django") is None:
        use_project_venv()
    if not os.environ.get("DATABASE_URL"):
        from hitl.devstack import manage

        sys.exit(manage(sys.argv[1:]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hitl.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
