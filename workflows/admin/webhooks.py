"""The admin of inbound webhook sources, their signing secrets and inbound messages."""

from __future__ import annotations

from typing import Any

# --- Inbound webhooks -----------------------------------------------------------------------
# Writes go through workflows.services.webhook_sources (workflow admins only, audited). A new
# secret is shown once, as a message; no list or page ever shows a stored one. The imports
# stay with the section they serve.
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from workflows.admin.base import ReadOnlyAdmin, administered, apply_service
from workflows.models import (
    InboundMessage,
    WebhookSecret,
    WebhookSource,
    Workflow,
)
from workflows.services import webhook_sources


def _show_secret(request: HttpRequest, source: Any, issued: Any) -> None:
    messages.warning(
        request,
        f"New signing secret for webhook source {source.slug} ({issued.record.fingerprint}); "
        f"copy it now, it is not shown again: {issued.secret}",
    )


class WebhookSecretInline(admin.TabularInline):
    model = WebhookSecret
    extra = 0
    can_delete = False
    fields = ("fingerprint", "created_at", "expires_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(WebhookSource)
class WebhookSourceAdmin(admin.ModelAdmin):
    list_display = ["slug", "workflow", "active", "rate_limit_per_minute", "url", "created_at"]
    list_filter = ["active", "workflow"]
    search_fields = ["slug", "description"]
    actions = ["rotate_secret", "add_secret", "disable", "enable"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return administered(request, super().get_queryset(request), "workflow__")

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[Any]:
        return [] if obj is None else [WebhookSecretInline]  # the first secret comes with it

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["workflow", "slug", "description", "rate_limit_per_minute"]
        return [
            "workflow",
            "slug",
            "url",
            "description",
            "active",
            "rate_limit_per_minute",
            "created_by",
            "created_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else ["workflow", "slug", "url", "created_by", "created_at"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {
            "rate_limit_per_minute": settings.HITL_WEBHOOK_RATE_LIMIT,
            **super().get_changeform_initial_data(request),
        }

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "workflow":
            kwargs["queryset"] = administered(request, Workflow.objects.all(), "")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="URL")
    def url(self, source: WebhookSource) -> str:
        return f"{settings.HITL_BASE_URL.rstrip('/')}/api/v1/webhooks/{source.slug}/"

    def save_model(self, request: HttpRequest, obj: WebhookSource, form: Any, change: bool) -> None:
        if change:
            webhook_sources.webhook_source_update(
                source=obj,
                user=request.user,
                active=obj.active,
                rate_limit_per_minute=obj.rate_limit_per_minute,
                description=obj.description,
            )
            return
        issued = webhook_sources.webhook_source_create(
            workflow=obj.workflow,
            slug=obj.slug,
            user=request.user,
            description=obj.description,
            rate_limit_per_minute=obj.rate_limit_per_minute,
        )
        source = issued.record.source
        # The admin goes on with `obj` (its log entry, the redirect): make it the saved row.
        obj.pk, obj.created_at, obj.created_by = source.pk, source.created_at, source.created_by
        obj._state.adding = False
        _show_secret(request, source, issued)

    @admin.action(description="Rotate the signing secret (old ones verify 24 more hours)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[WebhookSource]) -> None:
        def rotate(source: WebhookSource) -> None:
            issued = webhook_sources.webhook_secret_rotate(source=source, user=request.user)
            _show_secret(request, source, issued)

        apply_service(request, "rotate", queryset, rotate)

    @admin.action(description="Add a signing secret (the others stay valid)")
    def add_secret(self, request: HttpRequest, queryset: QuerySet[WebhookSource]) -> None:
        def add(source: WebhookSource) -> None:
            issued = webhook_sources.webhook_secret_add(source=source, user=request.user)
            _show_secret(request, source, issued)

        apply_service(request, "add secret", queryset, add)

    @admin.action(description="Disable the selected sources (they answer 404)")
    def disable(self, request: HttpRequest, queryset: QuerySet[WebhookSource]) -> None:
        apply_service(
            request,
            "disable",
            queryset,
            lambda source: webhook_sources.webhook_source_update(
                source=source, user=request.user, active=False
            ),
        )

    @admin.action(description="Enable the selected sources")
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookSource]) -> None:
        apply_service(
            request,
            "enable",
            queryset,
            lambda source: webhook_sources.webhook_source_update(
                source=source, user=request.user, active=True
            ),
        )


@admin.register(WebhookSecret)
class WebhookSecretAdmin(ReadOnlyAdmin):
    list_display = ["fingerprint", "source", "created_at", "expires_at", "revoked_at"]
    list_filter = ["source"]
    fields = ["source", "fingerprint", "created_at", "expires_at", "revoked_at"]  # never `secret`
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # `secret` is deferred: a list never decrypts what it does not show.
        queryset = super().get_queryset(request).defer("secret").select_related("source")
        return administered(request, queryset, "source__workflow__")

    @admin.action(description="Revoke the selected secrets (at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[WebhookSecret]) -> None:
        apply_service(
            request,
            "revoke",
            queryset,
            lambda secret: webhook_sources.webhook_secret_revoke(secret=secret, user=request.user),
        )


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdmin):
    list_display = ["webhook_id", "source", "run", "received_at", "body_sha256"]
    list_filter = ["source"]
    search_fields = ["webhook_id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request).select_related("source", "run")
        return administered(request, queryset, "source__workflow__")
