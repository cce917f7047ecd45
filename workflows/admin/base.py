"""What every admin page here shares: read-only model pages whose writes go through services,
and the scoping of a page to the workflows its user administers."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from workflows.errors import ServiceError


class ReadOnlyAdmin(admin.ModelAdmin):
    """Writes go through services; the admin shows state and offers service-backed actions."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def administered(request: HttpRequest, queryset: QuerySet, path: str) -> QuerySet:
    """Only what belongs to workflows the user administers (superusers see everything).

    `path` leads from the queryset's model to its workflow, e.g. "workflow__" ("" for
    workflows themselves).
    """
    user: Any = request.user
    if getattr(user, "is_superuser", False):
        return queryset
    return queryset.filter(**{f"{path}admins": user})


def apply_service(request: HttpRequest, action: str, objects: QuerySet, call: Any) -> None:
    """Run an admin action's service on each selected object; a refusal is a message."""
    done = failed = 0
    for obj in objects:
        try:
            call(obj)
            done += 1
        except ServiceError as exc:
            failed += 1
            messages.warning(request, f"{obj}: {exc}")
    messages.info(request, f"{action}: {done} done, {failed} skipped")
