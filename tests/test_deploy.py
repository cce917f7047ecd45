"""Production settings: `check --deploy` passes on production's environment and nothing less.

Each case starts a fresh process with only the variables it names, as a container would.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from workflows.checks import base_url_errors

ROOT = Path(__file__).resolve().parent.parent


def production_env(**changes: str | None) -> dict[str, str]:
    """Production's settings: DEBUG off, a strong key, hosts, an https base URL, two roles."""
    database = os.environ["DATABASE_URL"]
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": os.environ.get("DATABASE_RUNTIME_URL") or database,
        "DATABASE_OWNER_URL": database,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "hitl.example.com",
        "HITL_BASE_URL": "https://hitl.example.com",
        "HITL_AUDIT_KEYS": "prod:" + secrets.token_urlsafe(32),
    }
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({k: getattr(s, k, None) for k in ["
    "'SECURE_SSL_REDIRECT', 'SECURE_PROXY_SSL_HEADER', 'SECURE_HSTS_SECONDS', "
    "'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', 'SESSION_COOKIE_SECURE', "
    "'CSRF_COOKIE_SECURE', 'CSRF_COOKIE_HTTPONLY', 'SILENCED_SYSTEM_CHECKS']}))"
)


def settings_in(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "hitl.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_check_deploy_passes_at_warning_level_with_production_env() -> None:
    done = manage(production_env(), "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout


def test_a_missing_hitl_base_url_fails_check_deploy_naming_it() -> None:
    done = manage(production_env(HITL_BASE_URL=None), "check", "--deploy")
    assert done.returncode == 1
    assert "(hitl.E001) HITL_BASE_URL is 'http://127.0.0.1:8000'" in done.stderr
    assert "Set HITL_BASE_URL" in done.stderr


def test_check_deploy_still_warns_about_a_weak_key_and_one_database_role() -> None:
    env = production_env(DATABASE_OWNER_URL=None, SECRET_KEY="short")
    done = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 1
    assert "hitl.W001" in done.stderr
    assert "security.W009" in done.stderr


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://hitl.example.com", True),
        ("https://hitl.example.com:8443/prefix", True),
        ("http://hitl.example.com", False),
        ("https://localhost:8000", False),
        ("https://127.0.0.1", False),
        ("https://[::1]:8000", False),
        ("hitl.example.com", False),
        ("", False),
    ],
)
def test_the_base_url_check(url: str, ok: bool) -> None:
    assert (base_url_errors(url) == []) is ok


def test_production_defaults_are_secure_and_debug_turns_https_off() -> None:
    production = settings_in(production_env())
    assert production == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_PROXY_SSL_HEADER": None,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "CSRF_COOKIE_HTTPONLY": True,
        "SILENCED_SYSTEM_CHECKS": ["security.W021"],
    }
    development = settings_in(production_env(DEBUG="1"))
    assert development["SECURE_SSL_REDIRECT"] is False
    assert development["SECURE_HSTS_SECONDS"] == 0


def test_https_settings_come_from_the_environment() -> None:
    chosen = settings_in(
        production_env(
            SECURE_SSL_REDIRECT="0",
            SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
            SECURE_HSTS_SECONDS="3600",
            SECURE_HSTS_INCLUDE_SUBDOMAINS="0",
            SECURE_HSTS_PRELOAD="1",
        )
    )
    assert chosen["SECURE_SSL_REDIRECT"] is False
    assert chosen["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert chosen["SECURE_HSTS_SECONDS"] == 3600
    assert chosen["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False
    assert chosen["SECURE_HSTS_PRELOAD"] is True
    assert chosen["SILENCED_SYSTEM_CHECKS"] == []


def test_a_proxy_header_in_the_wrong_form_stops_the_process_with_the_right_form() -> None:
    done = manage(production_env(SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"), "check")
    assert done.returncode == 1
    assert "HTTP_X_FORWARDED_PROTO, not 'X-Forwarded-Proto'" in done.stderr


@pytest.mark.django_db
def test_plain_http_is_redirected_except_the_health_probes(client: Client, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    redirected = client.get("/accounts/login/")
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://")
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)  # answered, not redirected
    # What the proxy forwarded over TLS is served, with HSTS.
    settings.SECURE_HSTS_SECONDS = 31536000
    behind_proxy = Client(headers={"X-Forwarded-Proto": "https"})
    served = behind_proxy.get("/accounts/login/")
    assert served.status_code == 200
    assert served["Strict-Transport-Security"].startswith("max-age=31536000")
