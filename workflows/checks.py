"""System checks for deployments (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning

W_ONE_ROLE = "hitl.W001"


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
