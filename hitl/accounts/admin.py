"""The user admin, audited: a change to a user's groups or staff, superuser or active flags
is an event (`user.access_changed`), since groups are what make a reviewer."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from workflows import services

User = get_user_model()


class AuditedUserAdmin(UserAdmin):
    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        before = services.user_access(User.objects.get(pk=obj.pk)) if change else None
        request._hitl_access_before = before  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        before = request._hitl_access_before  # type: ignore[attr-defined]
        if before is None:
            # A new user: no groups yet (the add form has none); record the flags it has.
            before = {"groups": [], "is_staff": False, "is_superuser": False, "is_active": True}
        services.user_access_record(
            user=form.instance, before=before, actor=services.Actor.for_user(request.user)
        )


admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)
