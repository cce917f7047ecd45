"""The Content Security Policy (django-csp): strict on every page, wider only on the API docs,
and templates that need nothing inline. tests/browser/test_security.py checks it in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
STRICT = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}


def policy(response: Any) -> dict[str, list[str]]:
    directives = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


@pytest.fixture
def staff(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def test_the_login_page_has_the_strict_policy() -> None:
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert policy(response) == STRICT
    assert "Content-Security-Policy-Report-Only" not in response


@pytest.mark.parametrize(
    "path", ["/review/", "/accounts/tokens/", "/admin/", "/admin/auth/user/", "/admin/login/"]
)
def test_the_desk_the_token_page_and_the_admin_have_the_strict_policy(
    staff: Client, path: str
) -> None:
    response = staff.get(path)
    assert response.status_code in (200, 302)
    assert policy(response) == STRICT


def test_the_api_docs_add_data_images_and_nothing_else(staff: Client) -> None:
    response = staff.get("/api/docs")
    assert response.status_code == 200
    assert policy(response) == {**STRICT, "img-src": ["'self'", "data:"]}


def test_api_answers_carry_the_policy_too() -> None:
    response = Client().get("/api/v1/workflows")
    assert response.status_code == 401
    assert policy(response) == STRICT


# --- templates that need nothing inline -----------------------------------------------------

TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
INLINE = {
    "an inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "a style element": re.compile(r"<style\b", re.IGNORECASE),
    "a style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "an event handler attribute": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "a javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "htmx code (hx-on)": re.compile(r"\shx-on[:-]", re.IGNORECASE),
    "an htmx trigger filter (eval)": re.compile(r'hx-trigger="[^"]*\[', re.IGNORECASE),
    "an htmx js: value (eval)": re.compile(r"hx-(vals|headers)=['\"]\s*js(cript)?:", re.IGNORECASE),
}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_template_needs_an_inline_script_a_style_or_eval(template: Path) -> None:
    text = template.read_text()
    found = [what for what, pattern in INLINE.items() if pattern.search(text)]
    assert found == []


def test_the_inline_finder_finds_what_it_looks_for() -> None:
    samples = {
        "an inline script": '<script type="module">go()</script>',
        "a style element": "<style>p{}</style>",
        "a style attribute": '<p style="color: red">',
        "an event handler attribute": '<a onclick="go()">',
        "a javascript: URL": '<a href="javascript:go()">',
        "htmx code (hx-on)": '<form hx-on::after-request="go()">',
        "an htmx trigger filter (eval)": '<div hx-trigger="every 1s [ok()]">',
        "an htmx js: value (eval)": "<div hx-vals='js:{a: go()}'>",
    }
    for what, sample in samples.items():
        assert INLINE[what].search(sample), what
    assert not INLINE["an inline script"].search('<script src="/static/x.js" defer></script>')


def test_htmx_adds_no_style_and_evaluates_nothing() -> None:
    base = (ROOT / "templates/base.html").read_text()
    (content,) = re.findall(r"<meta name=\"htmx-config\" content='([^']+)'>", base)
    config = json.loads(content)
    assert config["includeIndicatorStyles"] is False
    assert config["allowEval"] is False
    assert config["allowScriptTags"] is False
    # The indicator styles htmx would have added are in the stylesheet instead.
    assert ".htmx-request .htmx-indicator" in (ROOT / "static/review/desk.css").read_text()
