"""The tokens page: log in, create (shown once), revoke one's own, CSRF."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from hitl.accounts.models import ApiToken
from hitl.accounts.services import api_token_authenticate, api_token_create
from tests.helpers import database_state
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

URL = "/accounts/tokens/"
SECRET = re.compile(r"hitl_[A-Za-z0-9_-]{40,}")


def logged_in(user: User, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def test_the_page_needs_a_login() -> None:
    response = Client().get(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert Client().post(URL, {"name": "x", "scopes": ["runs:read"]}).status_code == 302
    assert not ApiToken.objects.exists()


def test_create_shows_the_token_once(owner: User, wait_workflow: Workflow) -> None:
    client = logged_in(owner)
    page = client.get(URL)
    assert page.status_code == 200 and "You have no API tokens yet" in page.content.decode()
    response = client.post(
        URL,
        {
            "name": "billing",
            "scopes": ["runs:start", "runs:read"],
            "workflows": [wait_workflow.pk],
            "expires": "30",
        },
    )
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    html = response.content.decode()
    (secret,) = set(SECRET.findall(html))
    token = api_token_authenticate(raw=secret)
    assert token.user == owner and token.name == "billing"
    assert sorted(token.scopes) == ["runs:read", "runs:start"]
    assert list(token.workflows.all()) == [wait_workflow] and token.limited
    assert token.expires_at is not None
    # Shown once: the list afterwards shows only its prefix.
    again = client.get(URL).content.decode()
    assert secret not in again and f"{token.prefix}…" in again


def test_no_workflow_ticked_means_every_workflow_of_the_user(owner: User) -> None:
    logged_in(owner).post(URL, {"name": "all", "scopes": ["runs:read"], "expires": ""})
    token = ApiToken.objects.get()
    assert not token.limited and token.expires_at is None


def test_a_bad_form_creates_nothing(owner: User, make_workflow: Callable[..., Workflow]) -> None:
    theirs = make_workflow({"slug": "theirs", "name": "T", "steps": [{"id": "w", "kind": "wait"}]})
    client = logged_in(owner)
    for data in (
        {"name": "", "scopes": ["runs:read"]},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["root"]},
        # A workflow the user has no role in is not even offered.
        {"name": "x", "scopes": ["runs:read"], "workflows": [theirs.pk]},
        {"name": "x", "scopes": ["runs:read"], "expires": "1000"},
    ):
        response = client.post(URL, data)
        assert response.status_code == 400, data
        assert not SECRET.search(response.content.decode())
    assert not ApiToken.objects.exists()


def test_revoke_ones_own_token(owner: User) -> None:
    token, _ = api_token_create(user=owner, name="old", scopes=["runs:read"])
    response = logged_in(owner).post(reverse("accounts:revoke", args=[token.pk]))
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    page = logged_in(owner).get(URL).content.decode()
    assert "revoked" in page


def test_another_users_token_cannot_be_revoked(owner: User, outsider: User) -> None:
    token, secret = api_token_create(user=owner, name="mine", scopes=["runs:read"])
    client = logged_in(outsider)
    before = database_state()
    response = client.post(reverse("accounts:revoke", args=[token.pk]))
    assert response.status_code == 404
    assert database_state() == before
    assert api_token_authenticate(raw=secret).pk == token.pk
    # Nor is it listed to them.
    assert token.prefix not in logged_in(outsider).get(URL).content.decode()


def test_csrf_is_enforced(owner: User) -> None:
    token, _ = api_token_create(user=owner, name="t", scopes=["runs:read"])
    client = logged_in(owner, csrf=True)
    assert client.post(URL, {"name": "x", "scopes": ["runs:read"]}).status_code == 403
    assert client.post(reverse("accounts:revoke", args=[token.pk])).status_code == 403
    assert ApiToken.objects.count() == 1
    token.refresh_from_db()
    assert token.revoked_at is None
    # With the page's token, it works.
    client.get(URL)
    csrf = client.cookies["csrftoken"].value
    ok = client.post(URL, {"name": "x", "scopes": ["runs:read"], "csrfmiddlewaretoken": csrf})
    assert ok.status_code == 200 and ApiToken.objects.count() == 2
