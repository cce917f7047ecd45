"""`manage.py seed_demo`: demo users, demo workflows and a few completed runs.

Refuses to run unless HITL_DEMO=1 and DEBUG are on: it creates users with known passwords.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from workflows import services
from workflows.ai.classifier import load_jsonl
from workflows.models import LocalModel, Run, Workflow

DEMO_DIR = Path(__file__).resolve().parents[2] / "workflows"
TICKETS = Path(__file__).resolve().parents[2] / "data" / "tickets.jsonl"
# Tickets the model has not seen: some pass the gate on their own, some wait for review.
DEMO_TICKETS = Path(__file__).resolve().parents[2] / "data" / "demo_tickets.json"
PASSWORD = "demo"  # noqa: S105 (demo-only, refused outside DEBUG + HITL_DEMO)

EXPENSES = [
    {"employee": "ada", "amount": 42.5, "currency": "EUR", "description": "train ticket"},
    {"employee": "grace", "amount": 180.0, "currency": "USD", "description": "conference"},
    {"employee": "linus", "amount": 12.0, "currency": "GBP", "description": "taxi"},
    {"employee": "barbara", "amount": 2400.0, "currency": "EUR", "description": "laptop"},
]


class Command(BaseCommand):
    help = "Seed demo users, workflows and runs (needs HITL_DEMO=1 and DEBUG=1)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not (settings.HITL_DEMO and settings.DEBUG):
            raise CommandError(
                "seed_demo creates users with known passwords: it only runs with "
                "HITL_DEMO=1 and DEBUG=1."
            )
        actor = services.Actor.system("seed_demo")
        self._local_model(actor)
        with transaction.atomic():
            admin, _reviewer = self._users()
            for path in sorted(DEMO_DIR.glob("*.yaml")):
                result = services.workflow_import(source=path.read_text(), actor=actor)
                workflow = result.workflow
                workflow.admins.add(admin)
                if workflow.reviewer_group is None:
                    workflow.reviewer_group = Group.objects.get(name="demo-reviewers")
                    workflow.save(update_fields=["reviewer_group"])
                self.stdout.write(f"workflow {workflow.slug} v{result.version.number}")
        self._runs(actor)

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
        group, _ = Group.objects.get_or_create(name="demo-reviewers")
        admin = self._user("demo-admin", staff=True)
        reviewer = self._user("demo-reviewer", staff=False)
        reviewer.groups.add(group)
        return admin, reviewer

    def _user(self, username: str, *, staff: bool) -> User:
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_password(PASSWORD)
            user.is_staff = staff
            user.is_superuser = staff
            user.email = f"{username}@example.com"
            user.save()
            self.stdout.write(f"user {username} / {PASSWORD}")
        return user

    def _runs(self, actor: services.Actor) -> None:
        self._ticket_runs(actor)
        workflow = Workflow.objects.get(slug="expense-intake")
        if Run.objects.filter(workflow=workflow).exists():
            return
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
        if Run.objects.filter(workflow=workflow).exists():
            return
        for ticket in json.loads(DEMO_TICKETS.read_text()):
            run = services.run_start(workflow=workflow, input=ticket, actor=actor, source="demo")
            run = services.run_drive(run=run)
            self.stdout.write(f"run {run.pk}: {run.status} {run.outcome}".rstrip())
