"""`manage.py seed_demo`: demo users, demo workflows and a few completed runs.

Refuses to run unless HITL_DEMO=1 and DEBUG are on: it creates users with known passwords.

`make run` seeds on every start, so the seed only creates what is missing and never changes
what exists: a demo workflow that exists keeps the active version, admins and groups the user
gave it (re-importing the demo file would publish and re-activate it), a demo user keeps their
password and groups, and demo runs are started only with the workflow the seed creates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from workflows import services
from workflows.ai.trainingdata import load_jsonl
from workflows.definitions import parse_source
from workflows.models import LocalModel, Run, Workflow

DEMO_DIR = Path(__file__).resolve().parents[2] / "workflows"
TICKETS = Path(__file__).resolve().parents[2] / "data" / "tickets.jsonl"
# Tickets the model has not seen: some pass the gate on their own, some wait for review.
DEMO_TICKETS = Path(__file__).resolve().parents[2] / "data" / "demo_tickets.json"
PASSWORD = "demo"  # noqa: S105 (demo-only, refused outside DEBUG + HITL_DEMO)
# The pg_advisory_xact_lock key that serialises concurrent seeds.
SEED_LOCK = int.from_bytes(b"hitlseed", "big")

EXPENSES = [
    {"employee": "ada", "amount": 42.5, "currency": "EUR", "description": "train ticket"},
    {"employee": "grace", "amount": 180.0, "currency": "USD", "description": "conference"},
    {"employee": "linus", "amount": 12.0, "currency": "GBP", "description": "taxi"},
    {"employee": "barbara", "amount": 2400.0, "currency": "EUR", "description": "laptop"},
]


def reviewers_group() -> Group:
    return Group.objects.get_or_create(name="demo-reviewers")[0]


class Command(BaseCommand):
    help = "Seed demo users, workflows and runs (needs HITL_DEMO=1 and DEBUG=1)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not (settings.HITL_DEMO and settings.DEBUG):
            raise CommandError(
                "seed_demo creates users with known passwords: it only runs with "
                "HITL_DEMO=1 and DEBUG=1."
            )
        actor = services.Actor.system("seed_demo")
        # One transaction: a seed interrupted half-way (Ctrl-C during the first `make run`)
        # leaves nothing, so the next one is again a first seed rather than a partial one.
        with transaction.atomic():
            # Two `make run`s starting together would both find a workflow missing and both
            # start its demo runs; the second waits here and then finds everything there.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEED_LOCK])
            self._local_model(actor)
            admin, _reviewer = self._users()
            created = {
                slug
                for path in sorted(DEMO_DIR.glob("*.yaml"))
                if (slug := self._workflow(path, admin, actor))
            }
            if "ticket-triage" in created:
                self._ticket_runs(actor)
            if "expense-intake" in created:
                self._expense_runs(actor)

    def _local_model(self, actor: services.Actor) -> None:
        if LocalModel.objects.filter(name="tickets").exists():
            return
        model = services.local_model_train(
            name="tickets",
            examples=load_jsonl(TICKETS),
            actor=actor,
            source={"file": TICKETS.name},
        )
        self.stdout.write(f"{model}: held-out accuracy {model.metrics['accuracy']:.3f}")

    def _users(self) -> tuple[User, User]:
        admin = self._user("demo-admin", staff=True)
        reviewer = self._user("demo-reviewer", staff=False)
        return admin, reviewer

    def _user(self, username: str, *, staff: bool) -> User:
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_password(PASSWORD)
            user.is_staff = staff
            user.is_superuser = staff
            user.email = f"{username}@example.com"
            user.save()
            if not staff:
                user.groups.add(reviewers_group())
            self.stdout.write(f"user {username} / {PASSWORD}")
        return user

    def _workflow(self, path: Path, admin: User, actor: services.Actor) -> str | None:
        """Import a demo workflow that does not exist yet; return its slug if it was created."""
        source = path.read_text()
        slug = parse_source(source)["slug"]
        existing = Workflow.objects.filter(slug=slug).select_related("active_version").first()
        if existing is not None:
            version = existing.active_version
            active = f"v{version.number}" if version else "no version"
            self.stdout.write(f"workflow {slug} exists ({active} active): left as it is")
            return None
        result = services.workflow_import(source=source, actor=actor)
        workflow = result.workflow
        workflow.admins.add(admin)
        workflow.reviewer_group = reviewers_group()
        workflow.save(update_fields=["reviewer_group"])
        self.stdout.write(f"workflow {workflow.slug} v{result.version.number}")
        return workflow.slug

    def _expense_runs(self, actor: services.Actor) -> None:
        workflow = Workflow.objects.get(slug="expense-intake")
        for expense in EXPENSES:
            run = services.run_start(workflow=workflow, input=expense, actor=actor, source="demo")
            # Seeding may happen before any worker runs: execute in-process, same code path.
            run = services.run_drive(run=run)
            if run.status == Run.Status.WAITING:
                services.run_resume(
                    run=run,
                    step_id="manager_hold",
                    actor=actor,
                    outcome="approved",
                    output={"approved_by": "demo-admin"},
                )
                run = services.run_drive(run=run)
            self.stdout.write(f"run {run.pk}: {run.status} {run.outcome}".rstrip())

    def _ticket_runs(self, actor: services.Actor) -> None:
        workflow = Workflow.objects.get(slug="ticket-triage")
        for ticket in json.loads(DEMO_TICKETS.read_text()):
            run = services.run_start(workflow=workflow, input=ticket, actor=actor, source="demo")
            run = services.run_drive(run=run)
            self.stdout.write(f"run {run.pk}: {run.status} {run.outcome}".rstrip())
