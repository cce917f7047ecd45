"""The REST API, version 1: django-ninja, mounted at /api/v1/ (OpenAPI 3.1 at
/api/v1/openapi.json, interactive docs at /api/docs).

Views are thin: they check the token's scope (`hitl.api.auth.grant`), call the selectors and
services the desk calls, and shape the answer (`hitl.api.schemas`). Every POST goes through
`hitl.api.idempotency`; every refusal has one body (`hitl.api.errors`).
"""

from __future__ import annotations

from ninja import NinjaAPI

from hitl.api import errors, review, runs, workflows
from hitl.api.auth import BearerToken
from hitl.api.parser import StrictJsonParser

DESCRIPTION = """\
Start and follow runs, and review tasks, from another system.

Authenticate with an API token (create one at /accounts/tokens/):
`Authorization: Bearer hitl_…`. A token carries scopes (`workflows:read`, `runs:start`,
`runs:read`, `tasks:read`, `tasks:decide`) and may be limited to some workflows; it never
grants more than its user's roles.

Every error has the body `{"error": {"code", "message", "details"}}`. Lists are paged by
an opaque `cursor` (`next_cursor` of the previous page). Every POST accepts an
`Idempotency-Key` header.
"""

api = NinjaAPI(
    title="hitl API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api-v1",
    auth=BearerToken(),
    parser=StrictJsonParser(),
    # Served at /api/docs by hitl.api.urls, outside the versioned prefix.
    docs_url=None,
)
errors.install(api)
api.add_router("/workflows", workflows.router)
api.add_router("/runs", runs.router)
api.add_router("/tasks", review.router)
