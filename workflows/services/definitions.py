"""Publishing workflow definitions as immutable, de-duplicated versions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from workflows.definitions import (
    definition_hash,
    parse_source,
    validate_definition,
)
from workflows.models import Workflow, WorkflowVersion
from workflows.services.audit import Actor, audit_record


@dataclass(frozen=True)
class ImportResult:
    workflow: Workflow
    version: WorkflowVersion
    created: bool
    activated: bool


def workflow_import(
    *,
    source: str,
    actor: Actor,
    publish: bool = True,
    created_by: Any = None,
    now: datetime | None = None,
) -> ImportResult:
    """Validate a definition (YAML/JSON text) and store it as a version of its workflow.

    The same content twice creates nothing new. With `publish`, the version is published
    and becomes the active one; runs already started keep the version they pinned.
    """
    now = now or timezone.now()
    definition = validate_definition(parse_source(source))
    content_hash = definition_hash(definition)
    with transaction.atomic():
        workflow, wf_created = Workflow.objects.select_for_update().get_or_create(
            slug=definition.slug,
            defaults={"name": definition.name, "description": definition.description},
        )
        if wf_created:
            audit_record(
                actor=actor,
                verb="workflow.created",
                target=workflow,
                payload={"slug": workflow.slug},
            )
        version = WorkflowVersion.objects.filter(
            workflow=workflow, content_hash=content_hash
        ).first()
        created = version is None
        if version is None:
            number = (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
            version = WorkflowVersion.objects.create(
                workflow=workflow,
                number=number,
                definition=definition.model_dump(mode="json"),
                source=source,
                content_hash=content_hash,
                created_by=created_by,
                created_at=now,
            )
            audit_record(
                actor=actor,
                verb="workflow.version_created",
                target=workflow,
                payload={"version": number},
            )
        activated = False
        if publish:
            activated = _publish(workflow, version, definition.name, definition.description, now)
            if activated:
                audit_record(
                    actor=actor,
                    verb="workflow.version_published",
                    target=workflow,
                    payload={"version": version.number},
                )
    return ImportResult(workflow, version, created, activated)


def _publish(
    workflow: Workflow, version: WorkflowVersion, name: str, description: str, now: datetime
) -> bool:
    changed = False
    if version.status != WorkflowVersion.Status.PUBLISHED:
        version.status = WorkflowVersion.Status.PUBLISHED
        version.published_at = now
        version.save(update_fields=["status", "published_at"])
        changed = True
    if workflow.active_version_id != version.pk:
        workflow.active_version = version
        workflow.name = name
        workflow.description = description
        workflow.save(update_fields=["active_version", "name", "description"])
        changed = True
    return changed
