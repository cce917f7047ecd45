"""Who may do what, as audit events: a workflow's roles and a user's groups and flags.

The Django admin edits these rows directly (its forms save models and many-to-many fields in
two steps), so it takes a snapshot before and hands it here after both steps: one event with
what changed, or none when nothing did.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from workflows.models import Workflow
from workflows.services.audit import Actor, audit_record


def workflow_roles(workflow: Workflow) -> dict[str, Any]:
    """The workflow's admins (usernames) and reviewer and escalation groups (names)."""
    return {
        "admins": sorted(workflow.admins.values_list("username", flat=True)),
        "reviewer_group": workflow.reviewer_group.name if workflow.reviewer_group else None,
        "escalation_group": workflow.escalation_group.name if workflow.escalation_group else None,
    }


def workflow_created_record(*, workflow: Workflow, actor: Actor) -> None:
    """A workflow made outside `workflow_import` (the admin's add form), with its roles."""
    audit_record(
        actor=actor,
        verb="workflow.created",
        target=workflow,
        payload={"slug": workflow.slug, "roles": workflow_roles(workflow)},
    )


def workflow_roles_record(*, workflow: Workflow, before: dict[str, Any], actor: Actor) -> bool:
    """Record `workflow.roles_changed` if its roles differ from `before`; say whether."""
    after = workflow_roles(Workflow.objects.get(pk=workflow.pk))
    if after == before:
        return False
    audit_record(
        actor=actor,
        verb="workflow.roles_changed",
        target=workflow,
        payload={"before": before, "after": after},
    )
    return True


def user_access(user: Any) -> dict[str, Any]:
    return {
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "is_active": user.is_active,
    }


def user_access_record(*, user: Any, before: dict[str, Any], actor: Actor) -> bool:
    """Record `user.access_changed` (groups added and removed, flags as [before, after]) if
    the user's groups or staff, superuser or active flags differ from `before`."""
    after = user_access(type(user).objects.get(pk=user.pk))
    if after == before:
        return False
    payload: dict[str, Any] = {"username": user.get_username()}
    added = sorted(set(after["groups"]) - set(before["groups"]))
    removed = sorted(set(before["groups"]) - set(after["groups"]))
    if added:
        payload["groups_added"] = added
    if removed:
        payload["groups_removed"] = removed
    for flag in ("is_staff", "is_superuser", "is_active"):
        if after[flag] != before[flag]:
            payload[flag] = [before[flag], after[flag]]
    with transaction.atomic():
        audit_record(
            actor=actor,
            verb="user.access_changed",
            object_type="user",
            object_id=user.pk,
            payload=payload,
        )
    return True
