"""Login throttling (django-axes): failures counted per username and address together, a
lockout page with a time to retry, a cool-off that ends on its own, an unlock for admins,
and API tokens left alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.utils import timezone

from hitl.accounts.services import api_token_create
from hitl.accounts.throttle import client_ip

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent

DESK = "/accounts/login/"
ADMIN = "/admin/login/"
HOME = "10.0.0.1"
ELSEWHERE = "10.0.0.2"


@pytest.fixture(autouse=True)
def _fast_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db: None) -> User:
    return User.objects.create_user("alice", "alice@example.com", "right")


@pytest.fixture
def bob(db: None) -> User:
    return User.objects.create_user("bob", "bob@example.com", "right")


def log_in(username: str, password: str, ip: str = HOME, path: str = DESK, **headers: str) -> Any:
    """One login from a fresh browser at `ip`: the response (a 302 when it worked)."""
    client = Client()
    return client.post(
        path,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=ip,
        **headers,
    )


def fail(times: int, username: str = "alice", ip: str = HOME, path: str = DESK) -> Any:
    response = None
    for _ in range(times):
        response = log_in(username, "wrong", ip, path)
    return response


def test_a_wrong_password_below_the_limit_is_an_ordinary_refusal(
    alice: User, settings: Any
) -> None:
    response = fail(settings.AXES_FAILURE_LIMIT - 1)
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert log_in("alice", "right").status_code == 302


def test_the_limit_locks_the_user_out_at_that_address_even_with_the_right_password(
    alice: User, settings: Any
) -> None:
    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 5  # HITL_LOGIN_FAILURE_LIMIT's default
    locked = fail(5)
    assert locked.status_code == 429
    refused = log_in("alice", "right")
    assert refused.status_code == 429
    assert "_auth_user_id" not in refused.client.session
    page = refused.content.decode()
    assert "Too many failed logins" in page
    # The time to retry: 15 minutes (HITL_LOGIN_COOLOFF_MINUTES) after the fifth failure.
    (shown,) = re.findall(r'Try again after <strong><time datetime="([^"]+)">([0-9:]+) UTC', page)
    retry_at = AccessAttempt.objects.get().attempt_time + timedelta(minutes=15)
    assert datetime.fromisoformat(shown[0]) == retry_at
    assert shown[1] == retry_at.strftime("%H:%M")
    assert "in about 15 minutes" in page
    assert 14 * 60 < int(refused["Retry-After"]) <= 15 * 60
    # Attempts refused during the lockout are not counted: the time to retry does not move.
    assert AccessAttempt.objects.get().failures_since_start == 5


def test_another_user_at_the_same_address_still_logs_in(
    alice: User, bob: User, settings: Any
) -> None:
    fail(settings.AXES_FAILURE_LIMIT)
    assert log_in("alice", "right").status_code == 429
    assert log_in("bob", "right").status_code == 302


def test_the_same_user_from_another_address_still_logs_in(alice: User, settings: Any) -> None:
    fail(settings.AXES_FAILURE_LIMIT)
    assert log_in("alice", "right", ip=HOME).status_code == 429
    assert log_in("alice", "right", ip=ELSEWHERE).status_code == 302


def test_spraying_usernames_from_one_address_locks_no_one_else(alice: User, settings: Any) -> None:
    for n in range(3 * settings.AXES_FAILURE_LIMIT):
        log_in(f"guess{n}", "wrong")
    assert log_in("alice", "right").status_code == 302


def test_the_lockout_ends_after_the_cool_off(
    alice: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cool_off = settings.AXES_COOLOFF_TIME
    assert cool_off == timedelta(minutes=15)  # HITL_LOGIN_COOLOFF_MINUTES' default
    fail(settings.AXES_FAILURE_LIMIT)
    start = timezone.now()

    def at(moment: timedelta) -> None:
        # axes stamps each request with the time from here (axes.handlers.proxy).
        monkeypatch.setattr("axes.handlers.proxy.now", lambda: start + moment)

    at(timedelta(minutes=14))
    still = log_in("alice", "right")
    assert still.status_code == 429
    assert "in about 1 minute." in still.content.decode()
    at(timedelta(minutes=15, seconds=5))
    assert log_in("alice", "right").status_code == 302


def test_a_success_starts_the_count_again(alice: User, settings: Any) -> None:
    fail(settings.AXES_FAILURE_LIMIT - 1)
    assert log_in("alice", "right").status_code == 302
    assert fail(settings.AXES_FAILURE_LIMIT - 1).status_code == 200
    assert log_in("alice", "right").status_code == 302


def test_the_limit_and_cool_off_come_from_settings(
    alice: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=3)
    assert fail(2).status_code == 429
    locked = log_in("alice", "right")
    assert "in about 3 minutes" in locked.content.decode()
    assert "after 2 failed attempts" in locked.content.decode()


def settings_with(**env: str) -> subprocess.CompletedProcess[str]:
    """The throttling settings a fresh process reads from this environment, as JSON."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, json; django.setup(); from django.conf import settings as s; "
            "print(json.dumps([s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), "
            "s.HITL_TRUSTED_PROXY_COUNT]))",
        ],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "hitl.settings",
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "DEBUG": "1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_environment_sets_the_limit_the_cool_off_and_the_proxies() -> None:
    defaults = settings_with()
    assert json.loads(defaults.stdout) == [5, 15 * 60, 0]
    chosen = settings_with(
        HITL_LOGIN_FAILURE_LIMIT="8", HITL_LOGIN_COOLOFF_MINUTES="60", HITL_TRUSTED_PROXY_COUNT="2"
    )
    assert json.loads(chosen.stdout) == [8, 3600, 2]


@pytest.mark.parametrize(
    "name, value",
    [
        ("HITL_LOGIN_FAILURE_LIMIT", "0"),
        ("HITL_LOGIN_FAILURE_LIMIT", "five"),
        ("HITL_LOGIN_COOLOFF_MINUTES", "0"),
        ("HITL_LOGIN_COOLOFF_MINUTES", "1.5"),
        ("HITL_TRUSTED_PROXY_COUNT", "-1"),
    ],
)
def test_a_bad_value_stops_the_process(name: str, value: str) -> None:
    done = settings_with(**{name: value})
    assert done.returncode != 0
    assert f"{name} must be" in done.stderr


def test_the_admin_login_is_throttled_the_same_way(alice: User, settings: Any) -> None:
    User.objects.create_superuser("boss", "boss@example.com", "right")
    assert log_in("boss", "right", path=ADMIN).status_code == 302
    locked = fail(settings.AXES_FAILURE_LIMIT, "boss", path=ADMIN)
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert log_in("boss", "right", path=ADMIN).status_code == 429
    # One count for both doors: the desk's login is locked for the pair too.
    assert log_in("boss", "right", path=DESK).status_code == 429
    assert log_in("boss", "right", ip=ELSEWHERE, path=ADMIN).status_code == 302


def test_an_admin_unlocks_with_manage_py(alice: User, settings: Any) -> None:
    fail(settings.AXES_FAILURE_LIMIT)
    assert log_in("alice", "right").status_code == 429
    call_command("axes_reset_username", "alice")
    assert log_in("alice", "right").status_code == 302


def test_an_admin_unlocks_in_the_admin(alice: User, settings: Any) -> None:
    fail(settings.AXES_FAILURE_LIMIT)
    boss = Client()
    boss.force_login(User.objects.create_superuser("boss", "boss@example.com", "right"))
    listing = boss.get("/admin/axes/accessattempt/?locked_out=yes").content.decode()
    assert "alice" in listing and HOME in listing
    attempt = AccessAttempt.objects.get(username="alice")
    response = boss.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert log_in("alice", "right").status_code == 302


def test_api_tokens_are_not_throttled(alice: User, settings: Any) -> None:
    _, secret = api_token_create(user=alice, name="ci", scopes=["workflows:read"])
    fail(settings.AXES_FAILURE_LIMIT)
    assert log_in("alice", "right").status_code == 429
    api = Client()
    ok = api.get("/api/v1/workflows", headers={"authorization": f"Bearer {secret}"})
    assert ok.status_code == 200
    for _ in range(2 * settings.AXES_FAILURE_LIMIT):
        bad = api.get("/api/v1/workflows", headers={"authorization": "Bearer hitl_wrong"})
        assert bad.status_code == 401
    again = api.get("/api/v1/workflows", headers={"authorization": f"Bearer {secret}"})
    assert again.status_code == 200
    assert list(AccessAttempt.objects.values_list("username", flat=True)) == ["alice"]


# --- the client's address ---------------------------------------------------------------------


def test_a_forged_x_forwarded_for_changes_nothing_by_default(alice: User, settings: Any) -> None:
    assert settings.HITL_TRUSTED_PROXY_COUNT == 0
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in("alice", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert log_in("alice", "right", HTTP_X_FORWARDED_FOR="192.0.2.99").status_code == 429


def test_behind_a_proxy_each_client_is_counted_apart(alice: User, settings: Any) -> None:
    settings.HITL_TRUSTED_PROXY_COUNT = 1
    proxy = "172.16.0.5"
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in("alice", "wrong", ip=proxy, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert log_in("alice", "right", proxy, HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 429
    # The client put its own "address" first; the proxy appended the real one.
    forged = "198.51.100.8, 198.51.100.7"
    assert log_in("alice", "right", proxy, HTTP_X_FORWARDED_FOR=forged).status_code == 429
    assert log_in("alice", "right", proxy, HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 302


@pytest.mark.parametrize(
    "count, remote, forwarded, expected",
    [
        (0, "10.0.0.1", "203.0.113.9", "10.0.0.1"),
        (1, "10.0.0.1", "203.0.113.9", "203.0.113.9"),
        (1, "10.0.0.1", "1.1.1.1, 203.0.113.9", "203.0.113.9"),
        (2, "10.0.0.1", "1.1.1.1, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        (2, "10.0.0.1", "203.0.113.9", "10.0.0.1"),  # did not pass both proxies
        (1, "10.0.0.1", "", "10.0.0.1"),
        (1, "10.0.0.1", "not-an-address", "10.0.0.1"),
        (1, "10.0.0.1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip(count: int, remote: str, forwarded: str, expected: str, settings: Any) -> None:
    settings.HITL_TRUSTED_PROXY_COUNT = count
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_the_lockout_page_shows_a_hostile_username_as_text(settings: Any) -> None:
    name = "<script>x</script>\u202egnp.exe"
    response = fail(settings.AXES_FAILURE_LIMIT, username=name)
    assert response.status_code == 429
    page = response.content.decode()
    assert "<script>x" not in page
    assert re.search(r"&lt;script&gt;x&lt;/script&gt;.*U\+202E", page)
