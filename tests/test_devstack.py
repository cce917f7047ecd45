"""hitl.devstack against real PostgreSQL and Redis servers, each test in its own var/ folder."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import PIPE
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import get_commands

from hitl import devstack
from tests.freshshell import fresh_env, private_var

ROOT = Path(devstack.__file__).resolve().parent.parent

# Run by `exec` with the app's own settings: connects through Django, psycopg and redis.
PROBE = textwrap.dedent(
    """
    import json, os, sys
    import django, redis
    django.setup()
    from django.db import connection, connections
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), current_setting('server_version_num')")
        database, version = cursor.fetchone()
    users = []
    for alias in ("default", "runtime"):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT current_user")
            users.append(cursor.fetchone()[0])
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.set("devstack-probe", "ok")
    print(json.dumps({
        "database_url": os.environ["DATABASE_URL"],
        "redis_url": os.environ["REDIS_URL"],
        "database": database,
        "users": users,
        "version": int(version),
        "redis_pid": client.info()["process_id"],
        "redis_value": client.get("devstack-probe").decode(),
    }))
    sys.exit(int(sys.argv[1]))
    """
)


def devstack_env(var: Path, **extra: str) -> dict[str, str]:
    unset = ("DATABASE_URL", "DATABASE_OWNER_URL", "DATABASE_RUNTIME_URL", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(HITL_VAR_DIR=str(var), DEBUG="1", DJANGO_SETTINGS_MODULE="hitl.settings", **extra)
    return env


def devstack_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hitl.devstack", *args]


def run_devstack(var: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        devstack_cmd(*args),
        cwd=ROOT,
        env=devstack_env(var, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def probe(var: Path, exit_code: int = 0, **extra: str) -> tuple[int, dict[str, object]]:
    done = run_devstack(var, "exec", "--", sys.executable, "-c", PROBE, str(exit_code), **extra)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    # Not our child, so it may linger unreaped as a zombie for a moment.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def redis_answers(url: object) -> bool:
    port = int(str(url).rsplit(":", 1)[1].split("/")[0])
    return devstack.redis_pong(port)


@pytest.fixture
def var() -> Iterator[Path]:
    with private_var() as var:
        yield var


Launch = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def launch(var: Path) -> Iterator[Launch]:
    """Start devstack in the background, in its own session (no terminal: it forwards SIGINT)."""
    procs: list[subprocess.Popen[str]] = []

    def launch(*args: str, **popen: Any) -> subprocess.Popen[str]:
        env = devstack_env(var)
        procs.append(
            subprocess.Popen(
                devstack_cmd(*args), cwd=ROOT, env=env, text=True, start_new_session=True, **popen
            )
        )
        return procs[-1]

    yield launch
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def test_exec_starts_servers_forwards_exit_code_and_stops_them(var: Path) -> None:
    code, seen = probe(var, exit_code=7)

    assert code == 7
    assert seen["database"] == "hitl"
    assert seen["version"] >= 180000  # type: ignore[operator]
    assert seen["redis_value"] == "ok"
    # The tests' layout: the owner creates test databases, the app's role is `runtime`.
    assert str(seen["database_url"]).startswith("postgres://hitl_owner@/hitl?host=")
    assert seen["users"] == ["hitl_owner", "hitl_app"]
    assert not (var / "postgres" / "postmaster.pid").exists()
    assert wait_gone(int(seen["redis_pid"]))  # type: ignore[call-overload]
    assert not redis_answers(seen["redis_url"])


def test_second_run_sees_the_same_database(var: Path) -> None:
    script = textwrap.dedent(
        """
        import os, sys, psycopg, dj_database_url
        config = dj_database_url.parse(os.environ["DATABASE_URL"])
        with psycopg.connect(dbname=config["NAME"], user=config["USER"], **config["OPTIONS"]) as c:
            cursor = c.execute(sys.argv[1])
            print(cursor.fetchone() if cursor.description else "")
        """
    )
    for sql in ("CREATE TABLE kept AS SELECT 42 AS x", "SELECT x FROM kept"):
        done = run_devstack(var, "exec", "--", sys.executable, "-c", script, sql)
        assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(42,)"


def test_servers_it_did_not_start_are_left_running(var: Path) -> None:
    started = run_devstack(var, "env")
    assert started.returncode == 0, started.stderr
    exports = dict(word.split("=", 1) for word in shlex.split(started.stdout) if "=" in word)
    assert set(exports) == {"DATABASE_URL", "DATABASE_RUNTIME_URL", "REDIS_URL"}
    pg_pid = devstack.postmaster_pid(var / "postgres")
    assert pg_pid is not None

    # Reuses the running PostgreSQL, and starts no Redis when REDIS_URL is set.
    code, seen = probe(var, REDIS_URL=exports["REDIS_URL"])
    assert code == 0
    assert seen["database_url"] == exports["DATABASE_URL"]
    assert seen["redis_url"] == exports["REDIS_URL"]
    assert devstack.postmaster_pid(var / "postgres") == pg_pid
    assert redis_answers(exports["REDIS_URL"])

    stopped = run_devstack(var, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert wait_gone(pg_pid)
    assert not redis_answers(exports["REDIS_URL"])
    assert not list((var / "redis").glob("*.pid"))


def test_database_url_in_environment_is_used_as_is(var: Path) -> None:
    done = run_devstack(
        var, "exec", "--", "sh", "-c", 'echo "$DATABASE_URL"', DATABASE_URL="postgres://elsewhere/x"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "postgres://elsewhere/x"
    assert not (var / "postgres").exists()


def test_missing_command_exits_127_and_stops_servers(var: Path) -> None:
    done = run_devstack(var, "exec", "--", "no-such-command-hitl")
    assert done.returncode == 127
    assert "cannot run no-such-command-hitl" in done.stderr
    assert devstack.postmaster_pid(var / "postgres") is None


def start_sleeper(launch: Launch) -> subprocess.Popen[str]:
    """`exec` of a child that says 'ready', then sleeps."""
    script = "import time; print('ready', flush=True); time.sleep(60)"
    proc = launch("exec", "--", sys.executable, "-c", script, stdout=PIPE, stderr=PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_child_and_servers(var: Path, launch: Launch, signum: int) -> None:
    proc = start_sleeper(launch)
    pg_pid = devstack.postmaster_pid(var / "postgres")
    redis_pids = [int(p.read_text()) for p in (var / "redis").glob("*.pid")]
    assert pg_pid is not None
    assert len(redis_pids) == 1

    proc.send_signal(signum)

    assert proc.wait(timeout=20) == 128 + signum
    assert wait_gone(pg_pid)
    assert wait_gone(redis_pids[0])


def test_concurrent_user_keeps_postgres_of_the_other(var: Path, launch: Launch) -> None:
    owner = start_sleeper(launch)
    pg_pid = devstack.postmaster_pid(var / "postgres")
    assert pg_pid is not None

    # A second invocation reuses the server and leaves it running for the first one.
    code, _ = probe(var)
    assert code == 0
    assert devstack.postmaster_pid(var / "postgres") == pg_pid

    # The first one started it, so it stops it.
    owner.terminate()
    owner.wait(timeout=20)
    assert wait_gone(pg_pid)


def test_owner_leaves_postgres_running_while_another_invocation_uses_it(
    var: Path, launch: Launch
) -> None:
    owner = start_sleeper(launch)
    pg_pid = devstack.postmaster_pid(var / "postgres")
    user = start_sleeper(launch)

    owner.terminate()
    owner.wait(timeout=20)
    assert owner.stderr is not None
    assert "still used by another invocation" in owner.stderr.read()
    assert devstack.postmaster_pid(var / "postgres") == pg_pid

    user.terminate()
    user.wait(timeout=20)
    assert devstack.postmaster_pid(var / "postgres") == pg_pid  # not started by `user`


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_app(launch: Launch, log: Path) -> tuple[subprocess.Popen[str], str]:
    """`run` on a free port, its output to a file (a pipe nobody reads would fill up)."""
    port = free_port()
    with log.open("w") as out:
        proc = launch("run", "--port", str(port), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while "hitl is running at" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return proc, f"http://127.0.0.1:{port}/"


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for row in out.splitlines():
        child, parent = map(int, row.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


needs_seed_demo = pytest.mark.skipif(
    "seed_demo" not in get_commands(), reason="the seed_demo management command does not exist yet"
)


@needs_seed_demo
def test_run_serves_the_app_and_stops_everything_on_sigterm(
    var: Path, launch: Launch, tmp_path: Path
) -> None:
    proc, url = start_app(launch, tmp_path / "run.log")
    spawned = descendants(proc.pid)
    pg_pid = devstack.postmaster_pid(var / "postgres")
    with urllib.request.urlopen(url + "admin/login/", timeout=5) as response:  # noqa: S310
        assert response.status == 200

    proc.terminate()

    assert proc.wait(timeout=30) == 0
    assert all(wait_gone(pid) for pid in spawned)
    assert pg_pid is not None
    assert wait_gone(pg_pid)


@needs_seed_demo
def test_run_stops_everything_when_a_child_dies(launch: Launch, tmp_path: Path) -> None:
    proc, _ = start_app(launch, tmp_path / "run.log")
    spawned = descendants(proc.pid)
    beat = next(
        pid
        for pid in spawned
        if b"beat" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    )

    os.kill(beat, signal.SIGKILL)

    assert proc.wait(timeout=30) == 1
    assert "the Celery beat exited unexpectedly" in (tmp_path / "run.log").read_text()
    assert all(wait_gone(pid) for pid in spawned)


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


@needs_seed_demo
def test_manage_py_in_a_fresh_shell_uses_the_running_apps_servers(
    var: Path, launch: Launch, tmp_path: Path
) -> None:
    proc, _ = start_app(launch, tmp_path / "run.log")
    worker = next(
        pid
        for pid in descendants(proc.pid)
        if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    )
    pg_pid = devstack.postmaster_pid(var / "postgres")
    broker = "from django.conf import settings; print(settings.CELERY_BROKER_URL)"

    done = subprocess.run(
        ["./manage.py", "shell", "-v", "0", "-c", broker],
        cwd=ROOT,
        env=fresh_env(var),
        capture_output=True,
        text=True,
        timeout=60,
    )

    # What the command enqueues reaches the app's worker, on the app's database.
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == environ_of(worker)["REDIS_URL"]
    assert "the running `make run`'s Redis" in done.stderr
    # The app still uses PostgreSQL: the command, which did not start it, left it running.
    assert devstack.postmaster_pid(var / "postgres") == pg_pid
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    assert not (var / devstack.APP_RECORD).exists()


def test_run_makes_var_even_when_it_starts_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # With DATABASE_URL and REDIS_URL both set, no private server creates var/; beat's
    # schedule and the run record still live there.
    with private_var() as var:
        seen: list[bool] = []

        def migrate_fails(*args: Any, **kwargs: Any) -> int:
            seen.append(var.is_dir())
            return 3

        monkeypatch.setattr(devstack, "foreground", migrate_fails)
        quiet = SimpleNamespace(received=None)
        assert devstack.run_app("127.0.0.1", 8000, var, {}, quiet) == 3  # type: ignore[arg-type]
        assert seen == [True]


# Run inside `exec`: act as the superuser on the private database, then report owners.
AS_SUPERUSER = textwrap.dedent(
    """
    import json, os, sys
    import psycopg
    url = os.environ["DATABASE_URL"].replace("hitl_owner@", "postgres@", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in sys.argv[1:]:
            conn.execute(statement)
        print(json.dumps(conn.execute(
            "SELECT (SELECT pg_get_userbyid(datdba) FROM pg_database"
            "        WHERE datname = current_database()),"
            " (SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_an_older_hitl')"
        ).fetchone()))
    """
)


def test_a_database_made_before_the_two_roles_is_handed_to_the_owner(var: Path) -> None:
    # As an older hitl left it: the database and its tables belong to the superuser.
    made = run_devstack(
        var,
        "exec",
        "--",
        sys.executable,
        "-c",
        AS_SUPERUSER,
        "ALTER DATABASE hitl OWNER TO postgres",
        "CREATE TABLE made_by_an_older_hitl (id int)",
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == ["postgres", "postgres"]

    again = run_devstack(var, "exec", "--", sys.executable, "-c", AS_SUPERUSER)

    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == ["hitl_owner", "hitl_owner"]


def test_the_private_stack_keeps_one_audit_key_and_the_environment_wins(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first: dict[str, str] = {}
    devstack.audit_defaults(var, first)
    key = var / devstack.AUDIT_KEY
    assert key.stat().st_mode & 0o777 == 0o600
    assert first["HITL_AUDIT_KEYS"] == f"dev:{key.read_text()}" and len(key.read_text()) == 64
    assert first["HITL_AUDIT_CHECKPOINT_FILE"] == str(var / devstack.AUDIT_CHECKPOINTS)
    again: dict[str, str] = {}
    devstack.audit_defaults(var, again)
    assert again == first  # the same key at every start: the chain it sealed still verifies
    own = {"HITL_AUDIT_KEY": "their-own-audit-key", "HITL_AUDIT_CHECKPOINT_FILE": "/elsewhere"}
    devstack.audit_defaults(var, own)
    assert own == {
        "HITL_AUDIT_KEY": "their-own-audit-key",
        "HITL_AUDIT_CHECKPOINT_FILE": "/elsewhere",
    }
