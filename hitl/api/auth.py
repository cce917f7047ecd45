"""Bearer tokens, and what a request may do with the one it carries.

Only `Authorization: Bearer hitl_…` is accepted: no session cookie, so a browser that is
logged in to the desk cannot be made to call the API by another site (no CSRF surface).

A token's scopes and workflows only narrow what its user's roles allow, and the roles are
the services' and selectors' to check (`workflows.access`), on every request: a user who
loses a role loses it for their tokens too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from hitl.accounts.models import ApiToken
from hitl.accounts.services import api_token_authenticate, token_actor, token_workflow_ids
from hitl.api.errors import ApiError
from workflows.services import Actor


class BearerToken(HttpBearer):
    def __call__(self, request: HttpRequest) -> ApiToken | None:
        # As HttpBearer's, without its DEBUG log of a header with another scheme: a token
        # sent as "Basic hitl_…" would land in the log whole.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        # TokenRefused (a ServiceError with status 401) says why: unknown, revoked, expired.
        return api_token_authenticate(raw=token)


@dataclass(frozen=True)
class Grant:
    """What a request may do: its token's user, narrowed to the token's workflows."""

    token: ApiToken
    # The token's workflows, or None for every workflow its user has a role in.
    within: frozenset[int] | None

    @property
    def user(self) -> Any:
        return self.token.user

    @property
    def actor(self) -> Actor:
        return token_actor(self.token)

    def reaches(self, workflow_id: int) -> bool:
        return self.within is None or workflow_id in self.within


def grant(request: HttpRequest, scope: str) -> Grant:
    """The request's grant for `scope`, or a 403 if its token lacks the scope."""
    token: ApiToken = request.auth  # type: ignore[attr-defined]
    if scope not in token.scopes:
        raise ApiError(
            403,
            "missing_scope",
            f"token {token.prefix}… lacks the scope {scope}",
            {"required": scope, "granted": sorted(token.scopes)},
        )
    return Grant(token=token, within=token_workflow_ids(token))
