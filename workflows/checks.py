"""System checks for deployments (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning

W_ONE_ROLE = "hitl.W001"
E_BASE_URL = "hitl.E001"
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def check_database_roles(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    return database_roles_warnings(settings.DATABASES)


def database_roles_warnings(databases: dict[str, Any]) -> list[Warning]:
    """Warn when the application would run as the owner of its own tables."""
    if "owner" in databases or "runtime" in databases:
        return []
    return [
        Warning(
            "DATABASE_OWNER_URL is not set: the application runs as the owner of its tables, "
            "so its credentials can truncate the audit trail or switch its triggers off.",
            hint="Run the application as a role of its own (DATABASE_URL) and migrations as "
            "the owner (DATABASE_OWNER_URL); see docs/architecture.md, 'Database roles'.",
            id=W_ONE_ROLE,
        )
    ]


def check_base_url(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    return base_url_errors(settings.HITL_BASE_URL)


def base_url_errors(base_url: str) -> list[Error]:
    """Refuse a deployment whose links (emails, chat, webhook URLs) would not reach it.

    An error, not a warning: every link a reviewer is sent would be wrong. The setting's
    default, for `make run`, is a loopback http:// address, so an unset one fails here too.
    """
    parts = urlsplit(base_url)
    if parts.scheme == "https" and parts.hostname and parts.hostname not in LOOPBACK:
        return []
    return [
        Error(
            f"HITL_BASE_URL is {base_url!r}: links in notifications, chat messages and webhook "
            "URLs must point at the deployment's public https:// address "
            "(the default, when it is unset, is `make run`'s).",
            hint="Set HITL_BASE_URL, e.g. https://hitl.example.com.",
            id=E_BASE_URL,
        )
    ]
