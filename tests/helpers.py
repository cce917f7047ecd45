from __future__ import annotations

from datetime import datetime

from django.db import connection

from workflows import services
from workflows.models import Run


def drive(run: Run, *, now: datetime | None = None) -> Run:
    """Execute a run's due steps in-process (unit tests: no worker, same claim/record path)."""
    return services.run_drive(run=run, now=now)


# Columns a request may write without changing anything that matters: a token's last use is
# recorded by every authenticated request, refused ones included.
VOLATILE = {"accounts_apitoken": ("last_used_at",)}


def database_state() -> dict[str, tuple[int, str]]:
    """Row count and a checksum of every row of every `workflows_*`, `auth_*`, `accounts_*`
    and `api_*` table (the columns in VOLATILE left out).

    Two equal states mean nothing was written: no row added, removed or changed.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " AND (tablename LIKE 'workflows\\_%%' OR tablename LIKE 'auth\\_%%'"
            " OR tablename LIKE 'accounts\\_%%' OR tablename LIKE 'api\\_%%')"
            " ORDER BY tablename"
        )
        tables = [name for (name,) in cursor.fetchall()]
        state = {}
        for table in tables:
            dropped = VOLATILE.get(table, ())
            row = "(to_jsonb(t) - %s::text[])::text" if dropped else "t::text"
            # Table names come from the catalogue, quoted; nothing user-supplied is formatted.
            cursor.execute(
                f"SELECT count(*), md5(coalesce(string_agg({row}, ',' ORDER BY {row}), ''))"  # noqa: S608
                f' FROM "{table}" t',
                [list(dropped), list(dropped)] if dropped else None,
            )
            count, digest = cursor.fetchone()
            state[table] = (count, digest)
    return state


def require_runtime_role() -> None:
    """Skip the calling module, saying why, unless the tests have the application's database
    role (the `runtime` alias, DATABASE_RUNTIME_URL); in CI its absence is an error."""
    import os

    import pytest
    from django.conf import settings

    if "runtime" in settings.DATABASES:
        return
    if os.environ.get("CI"):
        raise RuntimeError("CI must set DATABASE_RUNTIME_URL (see .ci/run)")
    pytest.skip(
        "DATABASE_RUNTIME_URL is not set: `make test` sets it up on its private PostgreSQL",
        allow_module_level=True,
    )
