"""The Django admin for the engine's records: workflows, versions, runs, steps, audit events
and verification runs, with retry and cancel actions backed by services."""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path

from workflows import services
from workflows.admin.base import ReadOnlyAdmin, apply_service
from workflows.models import (
    AuditEvent,
    AuditVerification,
    Run,
    StepRun,
    Workflow,
    WorkflowVersion,
)

# The beat task that verifies the trail incrementally (workflows.tasks), sent by name.
AUDIT_VERIFY_TASK = "hitl.audit_verify"


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
        # Who may do what is audited: the roles as they were, for `save_related` to compare.
        if change:
            request._hitl_roles_before = services.workflow_roles(  # type: ignore[attr-defined]
                Workflow.objects.get(pk=obj.pk)
            )
        self._save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        actor = services.Actor.for_user(request.user)
        if change:
            services.workflow_roles_record(
                workflow=form.instance,
                before=request._hitl_roles_before,  # type: ignore[attr-defined]
                actor=actor,
            )
        else:
            services.workflow_created_record(workflow=form.instance, actor=actor)

    def _save_model(self, request: HttpRequest, obj: Workflow, form: Any, change: bool) -> None:
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
        apply_service(
            request, "retry", queryset, lambda run: services.run_retry(run=run, actor=actor)
        )

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        actor = services.Actor.for_user(request.user)
        apply_service(
            request, "cancel", queryset, lambda run: services.run_cancel(run=run, actor=actor)
        )


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
        apply_service(
            request, "retry", queryset, lambda s: services.step_retry(step_run=s, actor=actor)
        )


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "seq",
        "created_at",
        "actor_label",
        "verb",
        "object_type",
        "object_id",
        "key_id",
    ]
    list_filter = ["verb", "object_type", "actor_type", "key_id"]
    search_fields = ["object_id", "verb"]


@admin.register(AuditVerification)
class AuditVerificationAdmin(ReadOnlyAdmin):
    """The scheduled verifier's runs: where each started and stopped, and what it found; a
    superuser may start one now (the same background task beat runs daily)."""

    change_list_template = "admin/workflows/auditverification/change_list.html"

    def get_urls(self) -> list[Any]:
        verify = path(
            "verify/",
            self.admin_site.admin_view(self.verify_view),
            name="workflows_auditverification_verify",
        )
        return [verify, *super().get_urls()]

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not getattr(request.user, "is_superuser", False):
            raise PermissionDenied("only superusers start a verification of the audit trail")
        current_app.send_task(AUDIT_VERIFY_TASK)
        self.message_user(
            request,
            "Verification started in the background: its result appears in this list when it"
            " is done (a failure is also emailed to the superusers).",
            messages.SUCCESS,
        )
        return redirect("admin:workflows_auditverification_changelist")

    list_display = ["verified_at", "ok", "first_seq", "last_seq", "checked", "problem"]
    list_filter = ["ok"]
