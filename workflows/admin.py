"""The Django admin: run and step status, attempts, timings and errors, plus retry/cancel."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from workflows import services
from workflows.errors import ServiceError
from workflows.models import AuditEvent, Run, StepRun, Workflow, WorkflowVersion


class ReadOnlyAdmin(admin.ModelAdmin):
    """Writes go through services; the admin shows state and offers service-backed actions."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "name",
        "active_version",
        "reviewer_group",
        "escalation_group",
        "daily_cost_cap_usd",
    ]
    search_fields = ["slug", "name"]
    filter_horizontal = ["admins"]
    readonly_fields = ["active_version", "created_at"]

    def save_model(self, request: HttpRequest, obj: Workflow, form: Any, change: bool) -> None:
        cap = obj.daily_cost_cap_usd
        if change and "daily_cost_cap_usd" in form.changed_data:
            # Through the service: the change is audited and budget waits resume at once.
            obj.daily_cost_cap_usd = form.initial.get("daily_cost_cap_usd")
            super().save_model(request, obj, form, change)
            services.workflow_set_daily_cap(
                workflow=obj, cap_usd=cap, actor=services.Actor.for_user(request.user)
            )
            return
        super().save_model(request, obj, form, change)


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "number", "status", "content_hash", "created_at", "published_at"]
    list_filter = ["status", "workflow"]


class StepRunInline(admin.TabularInline):
    model = StepRun
    extra = 0
    can_delete = False
    fields = (
        "step_id",
        "kind",
        "status",
        "output",
        "outcome",
        "attempts",
        "confidence",
        "calls",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
        "started_at",
        "finished_at",
        "error",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _apply(request: HttpRequest, action: str, objects: QuerySet, call: object) -> None:
    done = failed = 0
    for obj in objects:
        try:
            call(obj)  # type: ignore[operator]
            done += 1
        except ServiceError as exc:
            failed += 1
            messages.warning(request, f"{obj}: {exc}")
    messages.info(request, f"{action}: {done} done, {failed} skipped")


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["id", "workflow", "version", "status", "outcome", "source", "created_at"]
    list_filter = ["status", "outcome", "workflow"]
    date_hierarchy = "created_at"
    inlines = [StepRunInline]
    actions = ["retry_failed", "cancel"]

    @admin.action(description="Retry the failed step of the selected runs")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        actor = services.Actor.for_user(request.user)
        _apply(request, "retry", queryset, lambda run: services.run_retry(run=run, actor=actor))

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        actor = services.Actor.for_user(request.user)
        _apply(request, "cancel", queryset, lambda run: services.run_cancel(run=run, actor=actor))


@admin.register(StepRun)
class StepRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "run",
        "step_id",
        "kind",
        "status",
        "attempts",
        "confidence",
        "calls",
        "cost_usd",
        "due_at",
        "lease_expires_at",
        "error",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["step_id", "error"]
    actions = ["retry"]

    @admin.action(description="Retry the selected failed steps")
    def retry(self, request: HttpRequest, queryset: QuerySet[StepRun]) -> None:
        actor = services.Actor.for_user(request.user)
        _apply(request, "retry", queryset, lambda s: services.step_retry(step_run=s, actor=actor))


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "seq", "created_at", "actor_label", "verb", "object_type", "object_id"]
    list_filter = ["verb", "object_type", "actor_type"]
    search_fields = ["object_id", "verb"]


# --- Inbound webhooks -----------------------------------------------------------------------
# Writes go through workflows.services.webhook_sources (workflow admins only, audited). A new
# secret is shown once, as a message; no list or page ever shows a stored one. The imports
# stay with the section they serve.

from django.conf import settings  # noqa: E402

from workflows.models import InboundMessage, WebhookSecret, WebhookSource  # noqa: E402
from workflows.services import webhook_sources  # noqa: E402


def _show_secret(request: HttpRequest, source: Any, issued: Any) -> None:
    messages.warning(
        request,
        f"New signing secret for webhook source {source.slug} ({issued.record.fingerprint}); "
        f"copy it now, it is not shown again: {issued.secret}",
    )


def _administered(request: HttpRequest, queryset: QuerySet, field: str) -> QuerySet:
    """Only what belongs to workflows the user administers (everything, for a superuser)."""
    user: Any = request.user
    return queryset if user.is_superuser else queryset.filter(**{f"{field}admins": user})


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
        return _administered(request, super().get_queryset(request), "workflow__")

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
            kwargs["queryset"] = _administered(request, Workflow.objects.all(), "")
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

        _apply(request, "rotate", queryset, rotate)

    @admin.action(description="Add a signing secret (the others stay valid)")
    def add_secret(self, request: HttpRequest, queryset: QuerySet[WebhookSource]) -> None:
        def add(source: WebhookSource) -> None:
            issued = webhook_sources.webhook_secret_add(source=source, user=request.user)
            _show_secret(request, source, issued)

        _apply(request, "add secret", queryset, add)

    @admin.action(description="Disable the selected sources (they answer 404)")
    def disable(self, request: HttpRequest, queryset: QuerySet[WebhookSource]) -> None:
        _apply(
            request,
            "disable",
            queryset,
            lambda source: webhook_sources.webhook_source_update(
                source=source, user=request.user, active=False
            ),
        )

    @admin.action(description="Enable the selected sources")
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookSource]) -> None:
        _apply(
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
        return _administered(request, queryset, "source__workflow__")

    @admin.action(description="Revoke the selected secrets (at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[WebhookSecret]) -> None:
        _apply(
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
        return _administered(request, queryset, "source__workflow__")
