"""Static files in production: the image's `collectstatic` runs as the Dockerfile runs it,
and WhiteNoise serves the result with far-future cache headers, compressed.

Each case is a fresh process with DEBUG off, as in the container; only STATIC_ROOT is moved
into a temporary directory. (The rest of the suite serves static files as they lie:
tests/conftest.py.)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAR_FUTURE = "max-age=315360000, public, immutable"

# Collects into argv[1] with the settings the environment gives, then asks for what a browser
# would: the login page, the hashed stylesheet it links (gzip accepted), and the same file
# under its plain name. Prints what it saw as JSON.
COLLECT_AND_SERVE = """
import json, sys
import django
from django.conf import settings
django.setup()
from django.core.management import call_command
from django.templatetags.static import static
from django.test import Client
from django.test.utils import override_settings

def seen(response):
    return {"status": response.status_code, "headers": dict(response.headers),
            "size": len(b"".join(response.streaming_content)
                        if response.streaming else response.content)}

out = {"debug": settings.DEBUG, "storage": settings.STORAGES["staticfiles"]["BACKEND"]}
with override_settings(STATIC_ROOT=sys.argv[1], ALLOWED_HOSTS=["hitl.example.com"]):
    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client(HTTP_HOST="hitl.example.com")
    login = client.get("/accounts/login/", secure=True)
    out["login"] = {"status": login.status_code, "html": login.content.decode()}
    out["css_url"] = static("review/desk.css")
    out["hashed"] = seen(client.get(out["css_url"], secure=True, HTTP_ACCEPT_ENCODING="gzip"))
    out["plain"] = seen(client.get("/static/review/desk.css", secure=True))
    out["missing"] = seen(client.get("/static/review/nothing.css", secure=True))
print(json.dumps(out))
"""


def dockerfile_collectstatic_env() -> dict[str, str]:
    """The variables the Dockerfile's `collectstatic` step sets, as it sets them."""
    text = (ROOT / "docker/Dockerfile").read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if "manage.py collectstatic" in line]
    words = shlex.split(line.split("RUN", 1)[1])
    env = {}
    for word in words:
        name, equals, value = word.partition("=")
        if not equals or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            break
        env[name] = value
    assert words[len(env) : len(env) + 3] == [
        "/opt/venv/bin/python",
        "manage.py",
        "collectstatic",
    ]
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("staticfiles")
    done = subprocess.run(
        [sys.executable, "-c", COLLECT_AND_SERVE, str(root)],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "hitl.settings",
            **dockerfile_collectstatic_env(),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    result["root"] = root
    return result


def test_the_dockerfiles_collectstatic_runs_with_debug_off_into_the_manifest_storage(
    served: dict[str, Any],
) -> None:
    assert served["debug"] is False
    assert served["storage"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    manifest = json.loads((served["root"] / "staticfiles.json").read_text())["paths"]
    # The desk's own files, the vendored htmx, the admin's and the API docs'.
    for name in (
        "review/desk.css",
        "review/desk.js",
        "vendor/htmx-2.0.11.min.js",
        "admin/css/base.css",
        "ninja/swagger-ui-bundle.js",
    ):
        assert name in manifest
        assert (served["root"] / (manifest[name] + ".gz")).is_file(), name


def test_pages_link_the_hashed_files(served: dict[str, Any]) -> None:
    assert served["login"]["status"] == 200
    assert re.fullmatch(r"/static/review/desk\.[0-9a-f]{12}\.css", served["css_url"])
    html = served["login"]["html"]
    assert served["css_url"] in html
    assert re.search(r'/static/review/desk\.[0-9a-f]{12}\.js"', html)
    assert re.search(r'/static/vendor/htmx-2\.0\.11\.min\.[0-9a-f]{12}\.js"', html)


def test_a_hashed_file_is_served_compressed_with_a_far_future_cache_header(
    served: dict[str, Any],
) -> None:
    hashed = served["hashed"]
    assert hashed["status"] == 200
    assert hashed["headers"]["Cache-Control"] == FAR_FUTURE
    assert hashed["headers"]["Content-Encoding"] == "gzip"
    assert hashed["headers"]["Content-Type"].startswith("text/css")
    assert "Accept-Encoding" in hashed["headers"]["Vary"]
    assert hashed["size"] < (ROOT / "static/review/desk.css").stat().st_size


def test_a_plain_name_is_served_but_cached_briefly(served: dict[str, Any]) -> None:
    plain = served["plain"]
    assert plain["status"] == 200
    assert plain["headers"]["Cache-Control"] == "max-age=60, public"
    assert served["missing"]["status"] == 404


def test_with_debug_on_files_are_served_as_they_are() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, json; django.setup(); from django.conf import settings as s; "
            "print(json.dumps(s.STORAGES['staticfiles']['BACKEND']))",
        ],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "hitl.settings",
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "DEBUG": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "django.contrib.staticfiles.storage.StaticFilesStorage"
