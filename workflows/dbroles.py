"""Two database roles: an owner that migrates, and the role the application runs as.

The runtime role gets what the application needs and no more. Every table: SELECT, INSERT,
UPDATE, DELETE (never TRUNCATE). The audit trail: SELECT, INSERT, and UPDATE of the seal
columns only. Decisions: SELECT and INSERT. Only a table's owner may drop or disable its
triggers, so the append-only trigger holds against the application's own credentials: with
them, the evidence can be added to, never erased or rewritten.

The grants are applied after every `migrate` that runs as another role than the runtime
one (the `post_migrate` signal, connected in `WorkflowsConfig.ready`), with default
privileges so tables a later migration creates are usable at once. Which role is the runtime
one: the `runtime` database alias's user (the test layout: `default` is the owner), else, when
an `owner` alias exists, the `default` alias's user (the deployment layout: the app is
`default`, migrations go through `owner`). With neither, there is one role and nothing to grant.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections
from psycopg import sql

# The columns the sealer fills once on each event (`workflows.services.audit.audit_seal`).
AUDIT_SEAL_COLUMNS = ("seq", "prev_hash", "hash", "key_id", "sealed_at")
AUDIT_TABLE = "workflows_auditevent"
DECISION_TABLE = "workflows_decision"


def runtime_role() -> str | None:
    """The role the application runs as, if it is not the one that migrates."""
    databases = settings.DATABASES
    if "runtime" in databases:
        return str(databases["runtime"]["USER"])
    if "owner" in databases:
        return str(databases["default"]["USER"])
    return None


def grant_runtime(using: str, role: str) -> None:
    """Grant `role` what the application needs in the schema `using` migrated, as its owner."""
    r = sql.Identifier(role)
    statements = [
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
            r
        ),
        sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}").format(r),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public"
            " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
        ).format(r),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public"
            " GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {}"
        ).format(r),
        # The evidence: appended and sealed, never erased or rewritten.
        sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(AUDIT_TABLE), r),
        sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(sql.Identifier(AUDIT_TABLE), r),
        sql.SQL("GRANT UPDATE ({}) ON {} TO {}").format(
            sql.SQL(", ").join(map(sql.Identifier, AUDIT_SEAL_COLUMNS)),
            sql.Identifier(AUDIT_TABLE),
            r,
        ),
        sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(DECISION_TABLE), r),
        sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(sql.Identifier(DECISION_TABLE), r),
    ]
    with connections[using].cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        # Redaction for retention: the one way this role may change a payload (blank it).
        cursor.execute("SELECT to_regprocedure('hitl_audit_redact(bigint)') IS NOT NULL")
        if cursor.fetchone()[0]:
            cursor.execute(
                sql.SQL("GRANT EXECUTE ON FUNCTION hitl_audit_redact(bigint) TO {}").format(r)
            )


def grant_after_migrate(*, using: str, **kwargs: Any) -> None:
    """post_migrate receiver: grant the runtime role, unless it is the role that migrated."""
    role = runtime_role()
    if role is None or role == connections[using].settings_dict["USER"]:
        return
    grant_runtime(using, role)
