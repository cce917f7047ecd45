"""The review desk: thin function views over the review services and selectors.

Each view renders a full page, or a named partial (`page.html#partial`) for htmx requests
that are not boosted. Every action is a plain form POST that also works without JavaScript.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.validators import slug_re
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from hitl.review.forms import DecisionForm, EditError, FilterForm, edit_fields, parse_edit
from workflows import selectors, services
from workflows.errors import Conflict, InvalidInput, NotAllowed
from workflows.models import Decision, ReviewTask, Workflow
from workflows.models.review import QUEUE_ORDER, REVIEW_ACTIONS, ReviewAction

PAGE_SIZE = 50


def _partial(request: HttpRequest) -> bool:
    """A targeted htmx request gets a fragment; a boosted one (a whole page) gets the page."""
    htmx = getattr(request, "htmx", None)
    return htmx is not None and bool(htmx) and not htmx.boosted


@require_GET
@login_required
def queue(request: HttpRequest) -> HttpResponse:
    form = FilterForm(request.GET)
    form.is_valid()
    filters = {k: v for k, v in form.cleaned_data.items() if k in form.fields and v}
    workflow = _workflow(filters.get("workflow"))
    tasks = selectors.review_task_list(
        user=request.user,
        workflow=workflow,
        status=filters.get("status") or ReviewTask.LIVE,
        min_priority=filters.get("priority"),
        reason=filters.get("reason"),
        mine=bool(filters.get("mine")),
    )
    if filters.get("workflow") and workflow is None:
        tasks = tasks.none()
    # The list shows the AI's answer, not the samples and votes behind it: skip decoding them.
    tasks = tasks.defer("guarded__meta")
    after = None
    if filters.get("after"):
        try:
            after = selectors.QueueCursor.decode(filters["after"])
        except (ValueError, OverflowError):
            after = None  # a stale or hand-made cursor: start from the top
    rows, next_cursor = selectors.review_task_page(tasks, after=after, size=PAGE_SIZE)
    query = request.GET.copy()
    query.pop("after", None)
    workflows = list(selectors.workflows_with_tasks_visible(user=request.user))
    decidable = selectors.review_tasks_decidable(tasks=rows, workflows=workflows)
    context = {
        # Each row with who it waits for when the viewer may see it but not decide it.
        "rows": rows,
        "waiting": {
            t.pk: selectors.task_audience(t)
            for t in rows
            if t.pk not in decidable and t.status in ReviewTask.LIVE
        },
        "filters": form,
        "counts": selectors.review_task_counts(user=request.user, workflow=workflow),
        "workflows": workflows,
        "count_cap": selectors.COUNT_CAP,
        "query": query.urlencode(),
        "self_query": request.GET.urlencode(),
        "next_cursor": next_cursor.encode() if next_cursor else None,
        "paged": after is not None,
        "now": timezone.now(),
    }
    template = "review/queue.html#queue" if _partial(request) else "review/queue.html"
    return render(request, template, context)


def _workflow(slug: str | None) -> Workflow | None:
    return Workflow.objects.filter(slug=slug).first() if slug else None


@require_POST
@login_required
def next_task(request: HttpRequest) -> HttpResponse:
    asked = request.POST.get("workflow", "")
    workflow = _workflow(asked) if slug_re.fullmatch(asked) else None
    if asked and workflow is None:
        # Claiming from every workflow instead would hand out work the reviewer did not ask for.
        messages.error(request, "There is no such workflow; nothing was claimed.")
        return redirect("review:queue")
    return _next(request, workflow=workflow, last="Nothing is waiting for you.")


def _detail(request: HttpRequest, pk: int) -> selectors.TaskDetail:
    try:
        return selectors.review_task_get(user=request.user, task_id=pk)
    except NotAllowed:
        # The same answer for a task that does not exist and one the user may not see.
        raise Http404("no such task, or you may not see it") from None


def _render_task(
    request: HttpRequest,
    detail: selectors.TaskDetail,
    *,
    status: int = 200,
    error: str = "",
    reason_error: str = "",
    conflict: str = "",
    form_data: Any = None,
) -> HttpResponse:
    task = detail.task
    now = timezone.now()
    held_by_other = task.held_by_other(request.user.pk, now)
    if not conflict and held_by_other:
        until = timezone.localtime(task.claim_expires_at).strftime("%H:%M")
        conflict = f"{task.claimed_by} is reviewing this task (claim until {until})."
    if not conflict and task.status not in ReviewTask.LIVE:
        conflict = _closed_message(detail)
    data = form_data or {}
    actions = _actions(task)
    current = detail.shown.get("output")
    edited = _edited(detail, data)
    context = {
        "d": detail,
        "task": task,
        "shown": detail.shown,
        "error": error,
        # Shown at the reason field itself, which gets the focus.
        "reason_error": _sentence(reason_error),
        "conflict": conflict,
        "actionable": detail.can_decide and task.status in ReviewTask.LIVE and not held_by_other,
        "held_by_other": held_by_other,
        "actions": actions,
        "needs_reason": _listed(a.label.lower() for a in actions if a.needs_reason),
        "max_reason": Decision.MAX_REASON,
        "edit_fields": edit_fields(detail.output_schema, edited or current, original=current),
        # The edit box's diff, as the server sees the fields (the page's script keeps it live).
        "edited": current if edited is None else edited,
        "reason": data.get("reason", ""),
        "chosen": data.get("action", ""),
        "now": now,
        "live": ReviewTask.LIVE,
        "rejected": detail.decision is not None
        and detail.decision.action == Decision.Action.REJECT,
    }
    template = "review/task.html#task" if _partial(request) else "review/task.html"
    return render(request, template, context, status=status)


def _actions(task: ReviewTask) -> list[ReviewAction]:
    """The actions the desk offers: escalation is one level deep, so an escalated task
    (one for the escalation level) cannot be escalated again."""
    return [
        a
        for a in REVIEW_ACTIONS.values()
        if not (
            a.value == Decision.Action.ESCALATE and task.audience == ReviewTask.Audience.ESCALATION
        )
    ]


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _listed(words: Any) -> str:
    items = list(words)
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else "".join(items)


def _closed_message(detail: selectors.TaskDetail) -> str:
    task = detail.task
    if task.status == ReviewTask.Status.DECIDED:
        decision = detail.decision
        by = f" by {decision.reviewer}" if decision else ""
        return f"This task has already been decided{by}."
    if task.status == ReviewTask.Status.ESCALATED:
        successor = detail.escalated_to
        if successor is None:
            return "This task has been escalated; the escalation level carries on."
        waits = selectors.task_audience(successor, named=True)
        return f"This task has been escalated: task {successor.pk} carries on, for {waits}."
    return "This task was cancelled with its run."


def _edited(detail: selectors.TaskDetail, data: Any) -> Any:
    if not data or data.get("action") != "edit":
        return None
    try:
        return parse_edit(detail.output_schema, data)
    except EditError:
        return None


@require_GET
@login_required
def task_page(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_task(request, _detail(request, pk))


@require_POST
@login_required
def claim(request: HttpRequest, pk: int) -> HttpResponse:
    detail = _detail(request, pk)
    try:
        services.review_claim(task=detail.task, user=request.user)
    except Conflict as exc:
        return _render_task(request, _detail(request, pk), status=409, conflict=str(exc))
    except NotAllowed as exc:
        return _render_task(request, detail, status=403, error=str(exc))
    return redirect("review:task", pk=pk)


@require_POST
@login_required
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    detail = _detail(request, pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        errors = dict(form.errors.items())
        reason_error = " ".join(str(e) for e in errors.pop("reason", []))
        message = "; ".join(f"{k}: {' '.join(str(e) for e in v)}" for k, v in errors.items())
        return _render_task(
            request,
            detail,
            status=400,
            error=message,
            reason_error=reason_error,
            form_data=request.POST,
        )
    action = form.cleaned_data["action"]
    output = None
    if action == "edit":
        try:
            output = parse_edit(detail.output_schema, request.POST)
        except EditError as exc:
            return _render_task(request, detail, status=400, error=str(exc), form_data=request.POST)
    try:
        # Deciding straight from the page claims first, in the same transaction: a
        # one-keystroke decision, and a refused one leaves no claim behind.
        services.review_decide(
            task=detail.task,
            user=request.user,
            action=action,
            reason=form.cleaned_data["reason"],
            output=output,
            claim=True,
        )
    except Conflict as exc:
        return _render_task(
            request, _detail(request, pk), status=409, conflict=str(exc), form_data=request.POST
        )
    except InvalidInput as exc:
        # A refusal about the reason (missing, too long) is shown at the reason field.
        about_reason = (
            REVIEW_ACTIONS[action].needs_reason and not form.cleaned_data["reason"].strip()
        )
        return _render_task(
            request,
            detail,
            status=400,
            error="" if about_reason else str(exc),
            reason_error=str(exc) if about_reason else "",
            form_data=request.POST,
        )
    except NotAllowed as exc:
        return _render_task(request, detail, status=403, error=str(exc))
    messages.success(request, f"Task {pk}: {REVIEW_ACTIONS[action].done}.")
    return _next(request, last="That was the last task waiting for you.")


def _next(request: HttpRequest, *, workflow: Workflow | None = None, last: str) -> HttpResponse:
    """The next task is claimed and shown at once; with none to claim, one the reviewer
    still holds; at the claims cap, the reviewer is told why and taken to a held task."""
    capped = False
    try:
        task = services.review_claim_next(user=request.user, workflow=workflow)
    except Conflict as exc:
        messages.error(request, f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
        task, capped = None, True
    if task is not None:
        return redirect("review:task", pk=task.pk)
    held = services.review_claims_held(user=request.user)
    if workflow is not None:
        held = held.filter(workflow=workflow)
    current = held.order_by(*QUEUE_ORDER).first()
    if current is not None:
        # One message that matches the page it is shown on: a task, not an empty queue.
        nothing_new = "" if capped else "Nothing new is waiting for you. "
        messages.info(request, f"{nothing_new}You still hold task {current.pk}.")
        return redirect("review:task", pk=current.pk)
    if not capped:
        messages.info(request, f"{last} The queue refreshes on its own.")
    return redirect("review:queue")


@require_POST
@login_required
def release(request: HttpRequest, pk: int) -> HttpResponse:
    detail = _detail(request, pk)
    try:
        services.review_release(task=detail.task, user=request.user)
    except Conflict as exc:
        return _render_task(request, _detail(request, pk), status=409, conflict=str(exc))
    messages.info(request, f"Task {pk} is back in the queue.")
    return redirect("review:queue")


@require_POST
@login_required
def skip(request: HttpRequest, pk: int) -> HttpResponse:
    detail = _detail(request, pk)
    try:
        services.review_skip(task=detail.task, user=request.user)
    except Conflict as exc:
        return _render_task(request, _detail(request, pk), status=409, conflict=str(exc))
    messages.info(request, f"Skipped task {pk}; it will not be offered to you again.")
    return _next(request, last="That was the last task waiting for you.")


@require_POST
@login_required
def renew(request: HttpRequest, pk: int) -> HttpResponse:
    """Keeps the claim alive while the reviewer has the page open (htmx, every few minutes)."""
    detail = _detail(request, pk)
    try:
        task = services.review_renew(task=detail.task, user=request.user)
    except Conflict as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain")
    until = timezone.localtime(task.claim_expires_at).strftime("%H:%M")
    return HttpResponse(f"claimed until {until}", content_type="text/plain")


def home(request: HttpRequest) -> HttpResponse:
    return redirect(reverse("review:queue"))
