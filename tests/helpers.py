from __future__ import annotations

from datetime import datetime

from django.db import connection

from workflows import services
from workflows.models import Run


def drive(run: Run, *, now: datetime | None = None) -> Run:
    """Execute a run's due steps in-process (unit tests: no worker, same claim/record path)."""
    return services.run_drive(run=run, now=now)


def database_state() -> dict[str, tuple[int, str]]:
    """Row count and a checksum of every row of every `workflows_*` and `auth_*` table.

    Two equal states mean nothing was written: no row added, removed or changed.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " AND (tablename LIKE 'workflows\\_%%' OR tablename LIKE 'auth\\_%%')"
            " ORDER BY tablename"
        )
        tables = [name for (name,) in cursor.fetchall()]
        state = {}
        for table in tables:
            # Table names come from the catalogue, quoted; nothing user-supplied is formatted.
            cursor.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"  # noqa: S608
                f' FROM "{table}" t'
            )
            count, digest = cursor.fetchone()
            state[table] = (count, digest)
    return state
