"""The admin of callback endpoints and their delivery log."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from workflows import outbound, services
from workflows.access import is_workflow_admin
from workflows.admin.base import ReadOnlyAdmin, administered, apply_service
from workflows.errors import ServiceError
from workflows.models import (
    Delivery,
    Endpoint,
    Event,
    Workflow,
)


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=Event.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None chosen: run.* for webhooks; new tasks, escalations and breaches for chat.",
    )
    min_priority = forms.IntegerField(
        required=False,
        help_text="Chat endpoints: new review tasks below this priority are not posted.",
    )

    class Meta:
        model = Endpoint
        fields = [
            "workflow",
            "kind",
            "url",
            "description",
            "event_types",
            "min_priority",
            "named_runs_only",
        ]
        help_texts = {
            "named_runs_only": "Only runs that name this URL as their callback_url report here.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            self.initial["min_priority"] = settings.HITL_CHAT_MIN_PRIORITY

    def clean_url(self) -> str:
        try:
            return outbound.check_url(self.cleaned_data["url"])
        except outbound.Refused as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.instance.pk and not data.get("event_types"):
            self.add_error("event_types", "Choose at least one event.")
        workflow = data.get("workflow") or getattr(self.instance, "workflow", None)
        user = getattr(self, "user", None)
        if workflow is not None and not is_workflow_admin(user, workflow):
            self.add_error(
                None, f"Only the admins of workflow {workflow.slug!r} manage its endpoints."
            )
        return data


_ENDPOINT_FIELDS = (
    "workflow",
    "kind",
    "url",
    "description",
    "event_types",
    "min_priority",
    "named_runs_only",
)
_ENDPOINT_SHOWN = (
    "active",
    "disabled_reason",
    "disabled_at",
    "secret_state",
    "delivery_log",
    "created_by",
    "created_at",
)


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    """Endpoints are created, changed, rotated and switched through the services; a signing
    secret is shown once, in the message after it was made, and never in any list or page."""

    form = EndpointForm
    list_display = ["id", "workflow", "kind", "shown_url", "events", "active", "disabled_reason"]
    list_filter = ["kind", "active", ("workflow", admin.RelatedOnlyFieldListFilter)]
    actions = ["rotate_secret", "disable", "enable"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Endpoint]:
        return administered(request, super().get_queryset(request), "workflow__")

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.user = request.user  # type: ignore[attr-defined]  # for EndpointForm.clean
        return form

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return _ENDPOINT_FIELDS if obj is None else (*_ENDPOINT_FIELDS, *_ENDPOINT_SHOWN)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The workflow, kind and audience are fixed once made; the rest changes through
        # actions.
        return () if obj is None else ("workflow", "kind", "named_runs_only", *_ENDPOINT_SHOWN)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "workflow":
            kwargs["queryset"] = administered(request, Workflow.objects.all(), "")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # disable instead: the delivery log stays

    @admin.display(description="URL")
    def shown_url(self, endpoint: Endpoint) -> str:
        return endpoint.url_shown()

    @admin.display(description="events")
    def events(self, endpoint: Endpoint) -> str:
        return ", ".join(endpoint.event_types)

    @admin.display(description="signing secret")
    def secret_state(self, endpoint: Endpoint) -> str:
        if endpoint.kind != Endpoint.Kind.WEBHOOK:
            return "none: chat messages are not signed"
        until = endpoint.previous_secret_expires_at
        previous = (
            f"; the previous one also signs until {until:%Y-%m-%d %H:%M} UTC" if until else ""
        )
        return f"set (shown once when made; rotate it to get a new one){previous}"

    @admin.display(description="deliveries")
    def delivery_log(self, endpoint: Endpoint) -> str:
        counts = dict(
            endpoint.deliveries.values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        url = reverse("admin:workflows_delivery_changelist") + f"?endpoint__id__exact={endpoint.pk}"
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none yet"
        return format_html('<a href="{}">delivery log</a> ({})', url, summary)

    def save_model(self, request: HttpRequest, obj: Endpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.endpoint_update(
                endpoint=obj,
                user=request.user,
                url=data["url"],
                event_types=data["event_types"],
                description=data["description"],
                min_priority=data["min_priority"],
            )
            return
        endpoint = services.endpoint_create(
            workflow=data["workflow"],
            user=request.user,
            url=data["url"],
            kind=data["kind"],
            event_types=data["event_types"] or None,
            description=data["description"],
            min_priority=data["min_priority"],
            named_runs_only=data["named_runs_only"],
        )
        obj.pk = endpoint.pk
        request._hitl_new_secret = endpoint.secret  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: Endpoint, post_url_continue: Any = None
    ) -> Any:
        response = super().response_add(request, obj, post_url_continue)
        secret = getattr(request, "_hitl_new_secret", None)
        if secret is None or "_popup" in request.POST:
            return response
        # To the endpoint's own page, whichever save button: that is where the secret shows.
        _show_secret(request, obj, secret)
        return HttpResponseRedirect(reverse("admin:workflows_endpoint_change", args=[obj.pk]))

    @admin.action(description="Rotate the signing secret (the old one signs for a grace period)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        for endpoint in queryset:
            try:
                rotated = services.endpoint_rotate_secret(endpoint=endpoint, user=request.user)
            except ServiceError as exc:
                messages.warning(request, f"{endpoint}: {exc}")
                continue
            assert rotated.secret is not None
            _show_secret(request, rotated, rotated.secret)

    @admin.action(description="Disable (cancels their pending deliveries)")
    def disable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        user = request.user
        apply_service(
            request, "disable", queryset, lambda e: services.endpoint_disable(endpoint=e, user=user)
        )

    @admin.action(description="Enable")
    def enable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        user = request.user
        apply_service(
            request, "enable", queryset, lambda e: services.endpoint_enable(endpoint=e, user=user)
        )


def _show_secret(request: HttpRequest, endpoint: Endpoint, secret: str) -> None:
    messages.warning(
        request,
        f"Signing secret of endpoint {endpoint.pk}, shown this once: {secret} — configure it"
        " in the receiver now; it cannot be shown again.",
    )


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: what was sent where, each attempt's answer, and redelivery."""

    list_display = [
        "id",
        "endpoint",
        "event",
        "webhook_id",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "due_at",
        "created_at",
        "delivered_at",
    ]
    # Only the endpoints of the deliveries shown: staff see no other workflow's endpoints.
    list_filter = ["status", "event", ("endpoint", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["webhook_id"]
    date_hierarchy = "created_at"
    actions = ["redeliver"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        queryset = super().get_queryset(request).select_related("endpoint")
        return administered(request, queryset, "endpoint__workflow__")

    @admin.action(description="Redeliver (same webhook-id, fresh attempts)")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        user = request.user
        apply_service(
            request,
            "redeliver",
            queryset,
            lambda d: services.delivery_redeliver(delivery=d, user=user),
        )
