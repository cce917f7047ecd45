from __future__ import annotations

import io
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

DEFINITION = {
    "slug": "cli-demo",
    "name": "CLI demo",
    "steps": [{"id": "a", "kind": "transform", "config": {"output": {"x": "1 + 1"}}}],
}


def write(tmp_path: Path, data: object, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def run(*args: str) -> str:
    out = StringIO()
    call_command("workflow", *args, stdout=out)
    return out.getvalue()


def test_import_publishes_and_activates(tmp_path: Path) -> None:
    assert run("import", str(write(tmp_path, DEFINITION))).strip() == (
        "cli-demo v1 (new, published and activated)"
    )
    workflow = Workflow.objects.get(slug="cli-demo")
    assert workflow.active_version.number == 1


def test_the_same_content_twice_creates_nothing_new(tmp_path: Path) -> None:
    path = write(tmp_path, DEFINITION)
    run("import", str(path))
    # Different formatting, same content.
    same = tmp_path / "same.json"
    same.write_text(__import__("json").dumps(DEFINITION, indent=4))
    assert run("import", str(same)).strip() == "cli-demo v1 (unchanged, published)"
    assert WorkflowVersion.objects.count() == 1


def test_draft_is_stored_but_not_activated(tmp_path: Path) -> None:
    run("import", str(write(tmp_path, DEFINITION)))
    changed = {**DEFINITION, "name": "CLI demo 2"}
    assert "v2 (new, draft)" in run("import", "--draft", str(write(tmp_path, changed)))
    assert Workflow.objects.get(slug="cli-demo").active_version.number == 1
    # Importing the same content without --draft publishes that version.
    assert "v2 (unchanged, published and activated)" in run("import", str(write(tmp_path, changed)))


def test_bad_definitions_are_refused_with_every_error_named(tmp_path: Path) -> None:
    bad = {
        "slug": "bad",
        "name": "Bad",
        "steps": [{"id": "a", "kind": "nope"}, {"id": "a", "kind": "wait", "next": "zz"}],
    }
    with pytest.raises(CommandError) as info:
        run("import", str(write(tmp_path, bad)))
    message = str(info.value)
    assert "steps[0] (a).kind: unknown step kind 'nope'" in message
    assert "steps[1] (a).id: duplicate step id 'a'" in message
    assert not Workflow.objects.exists()


def test_invalid_yaml_and_missing_files_are_clear(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [unclosed")
    with pytest.raises(CommandError, match="not valid YAML"):
        run("import", str(broken))
    with pytest.raises(CommandError, match="cannot read"):
        run("import", str(tmp_path / "missing.yaml"))


def test_export_writes_the_definition_back(tmp_path: Path) -> None:
    path = write(tmp_path, DEFINITION)
    run("import", str(path))
    assert yaml.safe_load(run("export", "cli-demo")) == DEFINITION
    with pytest.raises(CommandError, match="no workflow"):
        run("export", "nope")


def test_schema_is_json_schema() -> None:
    schema = __import__("json").loads(run("schema"))
    assert schema["$schema"].startswith("https://json-schema.org/")


def test_runs_retry_failed_command(tmp_path: Path) -> None:
    from tests.helpers import drive
    from workflows import services
    from workflows.models import Run

    definition = {
        "slug": "fails",
        "name": "Fails",
        "steps": [{"id": "t", "kind": "transform", "config": {"output": {"x": "input.nope"}}}],
    }
    run("import", str(write(tmp_path, definition)))
    workflow = Workflow.objects.get(slug="fails")
    failed = drive(
        services.run_start(workflow=workflow, input={}, actor=services.Actor.system("t"))
    )
    assert failed.status == Run.Status.FAILED
    out = StringIO()
    call_command("runs", "retry-failed", "--since", "2000-01-01", "--workflow", "fails", stdout=out)
    assert out.getvalue().strip() == "retried 1 failed run"
    failed.refresh_from_db()
    assert failed.status == Run.Status.RUNNING
    with pytest.raises(CommandError, match="not an ISO date"):
        call_command("runs", "retry-failed", "--since", "yesterday", stdout=StringIO())


# Definitions are untrusted text: every limit reaches the command line as a CommandError
# naming the setting, never as a traceback.


def refused(path: Path | str) -> str:
    with pytest.raises(CommandError) as info:
        run("import", str(path))
    assert not Workflow.objects.exists()
    return str(info.value)


def test_a_file_over_the_byte_limit_is_refused(tmp_path: Path, settings: Any) -> None:
    settings.HITL_DEFINITION_MAX_BYTES = 200
    path = write(tmp_path, {**DEFINITION, "description": "x" * 500})
    message = refused(path)
    assert "not a valid workflow definition" in message
    assert "larger than 200 bytes (HITL_DEFINITION_MAX_BYTES)" in message


def test_stdin_over_the_byte_limit_is_refused(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.HITL_DEFINITION_MAX_BYTES = 200
    text = yaml.safe_dump({**DEFINITION, "description": "x" * 500})
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert "HITL_DEFINITION_MAX_BYTES" in refused("-")


def test_stdin_within_the_limits_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    text = yaml.safe_dump(DEFINITION).replace("\n", "\r\n")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert "cli-demo v1 (new" in run("import", "-")
    # Line endings are normalised as when the file was read as text.
    assert "\r" not in Workflow.objects.get().active_version.source


def test_a_billion_laughs_is_refused(tmp_path: Path) -> None:
    lines = ["slug: cli-demo", "name: CLI demo", "steps: [{id: a, kind: wait}]", "input_schema:"]
    lines.append("  x-0: &a0 [" + ", ".join(["lol"] * 10) + "]")
    lines += [f"  x-{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert "HITL_DEFINITION_MAX_NODES" in refused(path)


def test_too_deep_a_definition_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"slug": "cli-demo", "input_schema": ' + "[" * 5000 + "]" * 5000 + "}")
    assert "HITL_DEFINITION_MAX_DEPTH" in refused(path)


def test_too_many_steps_are_refused(tmp_path: Path, settings: Any) -> None:
    settings.HITL_DEFINITION_MAX_STEPS = 2
    steps = [{"id": f"s{i}", "kind": "wait"} for i in range(3)]
    message = refused(write(tmp_path, {**DEFINITION, "steps": steps}))
    assert "steps: 3 steps; at most 2 are allowed (HITL_DEFINITION_MAX_STEPS)" in message


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(yaml.safe_dump(DEFINITION).replace("CLI demo", "Café").encode("latin-1"))
    assert "not UTF-8 text" in refused(path)


def test_an_endless_file_is_read_no_further_than_the_limit() -> None:
    assert "HITL_DEFINITION_MAX_BYTES" in refused("/dev/zero")


def test_a_text_only_stdin_is_read_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # An embedding may hand over a text stream with no bytes underneath (no .buffer).
    monkeypatch.setattr(sys, "stdin", io.StringIO(yaml.safe_dump(DEFINITION)))
    assert "cli-demo v1 (new" in run("import", "-")
