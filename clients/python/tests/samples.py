"""Bodies as hitl's API writes them (hitl/api/schemas.py), for the fake server to answer."""

from __future__ import annotations

from typing import Any

T0 = "2026-03-01T09:00:00.123Z"
T1 = "2026-03-01T09:00:04.500+00:00"


def step(**over: Any) -> dict[str, Any]:
    return {
        "step_id": "classify",
        "kind": "ai",
        "position": 0,
        "status": "completed",
        "attempts": 1,
        "outcome": "",
        "output": {"label": "billing"},
        "confidence": 0.62,
        "cost": {
            "calls": 3,
            "input_tokens": 1200,
            "output_tokens": 90,
            "cost_usd": "0.001234",
            "latency_ms": 850,
        },
        "waiting_for": None,
        "error": "",
        "started_at": T0,
        "finished_at": T1,
        **over,
    }


def decision(**over: Any) -> dict[str, Any]:
    return {
        "task": 9,
        "action": "edit",
        "reviewer": "grace",
        "reason": "a refund is billing",
        "edited_output": {"label": "billing"},
        "decided_at": T1,
        **over,
    }


def run(status: str = "completed", **over: Any) -> dict[str, Any]:
    finished = status in ("completed", "failed", "cancelled")
    return {
        "id": 17,
        "workflow": "ticket-triage",
        "version": 2,
        "status": status,
        "outcome": "approved" if finished else "",
        "source": "api",
        "started_by": "ada",
        "created_at": T0,
        "updated_at": T1,
        "finished_at": T1 if finished else None,
        "input": {"subject": "Charged twice"},
        "output": {"label": "billing"} if finished else None,
        "error": "",
        "steps": [step()],
        "reviews": [
            {
                "task": 9,
                "step": "check",
                "status": "decided",
                "reason": "low_confidence",
                "created_at": T0,
                "closed_at": T1,
                "decision": decision(),
            }
        ],
        **over,
    }


def run_summary(run_id: int) -> dict[str, Any]:
    body = run(id=run_id)
    for key in ("input", "output", "error", "steps", "reviews"):
        del body[key]
    return body


def task_summary(**over: Any) -> dict[str, Any]:
    return {
        "id": 9,
        "workflow": "ticket-triage",
        "run": 17,
        "step": "check",
        "status": "open",
        "audience": "reviewers",
        "reason": "low_confidence",
        "priority": 5,
        "due_at": None,
        "created_at": T0,
        "closed_at": None,
        "assignee": None,
        "claimed_by": None,
        "claim_expires_at": None,
        "can_decide": True,
        **over,
    }


def task(**over: Any) -> dict[str, Any]:
    return {
        **task_summary(),
        "input": {"subject": "Charged twice"},
        "shown": {"answer": {"label": "billing"}, "confidence": 0.62},
        "cost": {"calls": 3, "cost_usd": "0.001234"},
        "output_schema": {"type": "object"},
        "actions": ["approve", "reject", "edit", "escalate"],
        "claimed_by_me": False,
        "can_reassign": False,
        "waits_for": "a reviewer",
        "escalated_from": None,
        "escalated_to": None,
        "decisions": [],
        "final_output": None,
        "steps": [step()],
        **over,
    }


def workflow(slug: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": slug.title(),
        "description": "",
        "active_version": 1,
        "input_schema": {"type": "object"},
        "created_at": T0,
    }
