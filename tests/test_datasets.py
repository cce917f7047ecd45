"""`manage.py dataset export --format records`: one line per reviewed gate item, filtered,
split, streamed and audited. The chat format is in test_datasets_chat.py."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.datasets_world import PROMPT, SHOT, World, build_world, export, fake_models
from workflows.canonical import canonical_json, sha256_hex
from workflows.models import AuditEvent, Decision, Workflow
from workflows.splits import EVAL, TRAIN, split_of

pytestmark = pytest.mark.django_db

RECORD_KEYS = {
    "run", "task", "decision", "workflow", "workflow_version", "step", "guarded_step",
    "input", "shown_output", "final_output", "label", "reviewed", "action", "reason",
    "reviewer", "escalated", "model", "model_version", "prompt_version", "confidence",
    "region", "gate_reason", "threshold", "audit_rate", "split", "created_at", "claimed_at",
    "decided_at",
}  # fmt: skip
REVIEWED = {"charged", "refund", "urgent", "escalated", "audit"}


@pytest.fixture
def world(
    make_workflow: Callable[..., Workflow],
    reviewer: User,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> World:
    settings.HITL_GATE_AUDIT_SECRET = "test-audit-secret"
    settings.HITL_EVAL_SPLIT_RATE = 0.10
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return build_world(make_workflow, fake_models(monkeypatch), reviewer)


def by_name(world: World, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = {run.pk: name for name, run in world.runs.items()}
    return {names[record["run"]]: record for record in records}


def test_one_record_per_reviewed_item_with_every_field(world: World, tmp_path: Path) -> None:
    records, _ = export(tmp_path=tmp_path)
    assert all(set(record) == RECORD_KEYS for record in records)
    # Not the auto-approved item, not the one still waiting, and the escalated one once.
    assert set(by_name(world, records)) == REVIEWED
    assert all(record["reviewed"] for record in records)
    # Streamed in the order items were settled into the table: stable from one export to the next.
    assert [r["run"] for r in records] == sorted(r["run"] for r in records)


def test_an_approval_keeps_the_ai_answer_and_its_context(world: World, tmp_path: Path) -> None:
    records, _ = export(tmp_path=tmp_path)
    charged = by_name(world, records)["charged"]
    run = world.runs["charged"]
    decision = Decision.objects.get(task__run=run)
    assert charged | {"prompt_version": None} == {
        "run": run.pk,
        "task": decision.task_id,
        "decision": decision.pk,
        "workflow": "triage",
        "workflow_version": 1,
        "step": "check",
        "guarded_step": "classify",
        "input": {"id": "ticket-charged", "text": "I was charged twice"},
        "shown_output": {"label": "billing"},
        "final_output": {"label": "billing"},
        "label": "billing",
        "reviewed": True,
        "action": "approve",
        "reason": "",
        "reviewer": "reviewer",
        "escalated": False,
        "model": "openai:gpt-4o-mini",
        "model_version": None,
        "prompt_version": None,
        "confidence": 0.5,
        "region": "below_threshold",
        "gate_reason": "below_threshold",
        "threshold": 0.8,
        "audit_rate": 0.0,
        "split": split_of("triage", run.input, run_id=run.pk, rate=0.10),
        "created_at": "2030-01-07T09:00:00+00:00",
        "claimed_at": "2030-01-08T08:55:00+00:00",
        "decided_at": "2030-01-08T09:00:00+00:00",
    }
    # The prompt version names what the model was asked: the step's prompt, input, shots and
    # answer format, as published in the version the run pinned.
    config = {"prompt": PROMPT, "input": "input.text", "examples": [SHOT]}
    config["output"] = {"labels": ["billing", "refund", "bug"]}
    assert charged["prompt_version"] == sha256_hex(canonical_json(config))[:16]


def test_an_edit_exports_the_edit_as_final_and_the_ai_answer_as_shown(
    world: World, tmp_path: Path
) -> None:
    refund = by_name(world, export(tmp_path=tmp_path)[0])["refund"]
    assert refund["shown_output"] == {"label": "billing"}
    assert refund["final_output"] == {"label": "refund"}
    assert (refund["label"], refund["action"], refund["reason"]) == (
        "refund",
        "edit",
        "asks for a refund",
    )
    assert refund["confidence"] == 0.6


def test_a_rejection_exports_a_null_final_output(world: World, tmp_path: Path) -> None:
    urgent = by_name(world, export(tmp_path=tmp_path)[0])["urgent"]
    assert urgent["final_output"] is None and urgent["label"] is None
    assert urgent["shown_output"] == {"label": "bug"}
    assert (urgent["action"], urgent["reason"]) == ("reject", "spam")
    assert (urgent["region"], urgent["gate_reason"]) == ("rule", "rule:urgent")


def test_an_escalated_item_is_one_record_with_the_final_decision(
    world: World, tmp_path: Path
) -> None:
    escalated = by_name(world, export(tmp_path=tmp_path)[0])["escalated"]
    final = Decision.objects.get(task__run=world.runs["escalated"], action="approve")
    assert (escalated["decision"], escalated["task"]) == (final.pk, final.task_id)
    assert (escalated["reviewer"], escalated["action"], escalated["escalated"]) == (
        "escalator",
        "approve",
        True,
    )
    # The region is the gate's routing, not the escalation's reason.
    assert escalated["region"] == "below_threshold"
    assert escalated["created_at"] == "2030-01-07T09:03:00+00:00"


def test_an_audit_sample_says_so_with_the_rate_in_force(world: World, tmp_path: Path) -> None:
    audit = by_name(world, export(tmp_path=tmp_path)[0])["audit"]
    assert (audit["region"], audit["gate_reason"]) == ("audit", "audit_sample")
    assert (audit["threshold"], audit["audit_rate"], audit["workflow"]) == (0.5, 1.0, "audited")


def test_auto_approved_items_only_with_include_auto(world: World, tmp_path: Path) -> None:
    without = by_name(world, export(tmp_path=tmp_path)[0])
    assert "invoice" not in without
    records, _ = export("--include-auto", tmp_path=tmp_path)
    invoice = by_name(world, records)["invoice"]
    assert set(by_name(world, records)) == REVIEWED | {"invoice"}
    assert invoice["reviewed"] is False
    assert (invoice["action"], invoice["reviewer"], invoice["task"], invoice["decision"]) == (
        None,
        None,
        None,
        None,
    )
    assert invoice["final_output"] == invoice["shown_output"] == {"label": "billing"}
    assert (invoice["region"], invoice["gate_reason"], invoice["confidence"]) == (
        "auto",
        None,
        0.95,
    )
    assert invoice["created_at"] == "2030-01-07T09:04:00+00:00"
    assert invoice["claimed_at"] is None and invoice["decided_at"] is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--workflow", "audited"], {"audit"}),
        (["--workflow", "audited", "--workflow", "triage"], REVIEWED),
        # Settled (decided, or auto-approved) from the start of day 2, before the start of day 4.
        (["--since", "2030-01-09", "--until", "2030-01-11"], {"refund", "urgent", "escalated"}),
        (["--since", "2030-01-10T09:30:00+00:00"], {"escalated"}),
        (["--until", "2030-01-08T09:00:00"], set()),
        (["--action", "edit"], {"refund"}),
        (["--action", "edit", "--action", "reject"], {"refund", "urgent"}),
        (["--region", "rule"], {"urgent"}),
        (["--region", "audit", "--region", "rule"], {"audit", "urgent"}),
        (["--region", "below_threshold"], {"charged", "refund", "escalated"}),
        (["--region", "auto", "--include-auto"], {"invoice"}),
        (["--include-auto", "--since", "2030-01-07", "--until", "2030-01-08"], {"invoice"}),
        (["--action", "approve", "--include-auto"], {"charged", "escalated", "audit"}),
    ],
)
def test_every_filter(world: World, tmp_path: Path, args: list[str], expected: set[str]) -> None:
    assert set(by_name(world, export(*args, tmp_path=tmp_path)[0])) == expected


def test_the_split_filter_and_the_split_of_each_record(
    world: World, tmp_path: Path, settings: Any
) -> None:
    # At one half, these seven ticket ids fall on both sides; the test would say if not.
    settings.HITL_EVAL_SPLIT_RATE = 0.5
    everything, _ = export("--include-auto", tmp_path=tmp_path)
    for record in everything:
        run = record["run"]
        expected = split_of(record["workflow"], record["input"], run_id=run, rate=0.5)
        assert record["split"] == expected
    train, _ = export("--include-auto", "--split", "train", tmp_path=tmp_path, name="train")
    held, _ = export("--include-auto", "--split", "eval", tmp_path=tmp_path, name="eval")
    assert train and held
    assert {r["split"] for r in train} == {TRAIN} and {r["split"] for r in held} == {EVAL}
    assert {r["run"] for r in train}.isdisjoint({r["run"] for r in held})
    assert sorted(r["run"] for r in train + held) == sorted(r["run"] for r in everything)


def test_streamed_in_keyset_batches_with_the_same_result(world: World, tmp_path: Path) -> None:
    whole, _ = export("--include-auto", tmp_path=tmp_path, name="whole")
    with CaptureQueriesContext(connection) as queries:
        small, _ = export("--include-auto", "--batch-size", "2", tmp_path=tmp_path, name="small")
    assert small == whole
    pages = [q["sql"] for q in queries.captured_queries if "\"kind\" = 'gate'" in q["sql"]]
    # Six items in pages of two: three full pages and the empty one that ends the walk, each
    # bounded, none reading the whole table.
    assert len(pages) == 4 and all("LIMIT 2" in sql for sql in pages)


def test_an_export_is_audited_with_its_row_count_and_digest(world: World, tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    args = ["--out", str(out), "--workflow", "triage", "--action", "edit", "--action", "approve"]
    call_command("dataset", "export", *args, "--user", "reviewer", stderr=StringIO())
    event = AuditEvent.objects.get(verb="dataset.exported")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert (event.actor_type, event.actor_label) == ("user", "reviewer")
    assert (event.object_type, event.object_id) == ("dataset", digest)
    assert event.payload == {
        "format": "records",
        "rows": 3,
        "sha256": digest,
        "out": str(out),
        "skipped": {},
        "filters": {
            "workflows": ["triage"],
            "since": None,
            "until": None,
            "actions": ["edit", "approve"],
            "regions": [],
            "split": "all",
            "include_auto": False,
        },
    }
    assert len(out.read_text().splitlines()) == 3


def test_stdout_export_and_a_system_actor(world: World) -> None:
    stdout, stderr = StringIO(), StringIO()
    call_command("dataset", "export", "--out", "-", stdout=stdout, stderr=stderr)
    text = stdout.getvalue()
    assert len([json.loads(line) for line in text.splitlines()]) == len(REVIEWED)
    event = AuditEvent.objects.get(verb="dataset.exported")
    assert event.actor_type == "system"
    assert event.payload["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert event.payload["out"] == "-"
    assert "5 rows" in stderr.getvalue()


def test_progress_is_written_to_stderr_when_forced(world: World, tmp_path: Path) -> None:
    _, quiet = export(tmp_path=tmp_path)
    assert "items" not in quiet  # stderr is no terminal here
    _, loud = export("--progress", "--batch-size", "2", tmp_path=tmp_path)
    assert "exporting: 2/5 items, 2 rows" in loud
    assert "exporting: 5/5 items, 5 rows" in loud


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is not an ISO date"),
        (["--until", "2030-13-01"], "--until '2030-13-01' is not an ISO date"),
        (["--workflow", "nope"], "no workflow 'nope'"),
        (["--region", "maybe"], "invalid choice: 'maybe'"),
        (["--format", "csv"], "invalid choice: 'csv'"),
        (["--split", "test"], "invalid choice: 'test'"),
        (["--region", "auto"], "--region auto needs --include-auto"),
        (["--user", "ghost"], "no user 'ghost'"),
        (["--since", "2030-01-09", "--until", "2030-01-08"], "--since must be before --until"),
    ],
)
def test_bad_arguments_are_clear_command_errors(
    world: World, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out.jsonl"
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        call_command("dataset", "export", *args, "--out", str(out), stderr=StringIO())
    assert not out.exists()
    assert not AuditEvent.objects.filter(verb="dataset.exported").exists()


def test_a_bad_date_exits_non_zero_without_a_traceback(tmp_path: Path) -> None:
    manage = Path(__file__).resolve().parent.parent / "manage.py"
    done = subprocess.run(
        [sys.executable, str(manage), "dataset", "export", "--since", "soon", "--out", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "--since 'soon' is not an ISO date" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
