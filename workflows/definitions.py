"""Definition format v1: the typed schema of a workflow, its validation and its JSON Schema.

Validation collects every problem it can find and names the step and the field of each,
so an admin fixes a definition in one pass.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Literal

import jsonschema
import yaml
from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workflows import bounded_yaml, expressions
from workflows.canonical import canonical_json, sha256_hex
from workflows.steps import UnknownKind, get_kind, registry

END = "end"
DEFAULT_BRANCH = "default"
STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class StepDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=STEP_ID_PATTERN, description="Unique within the workflow.")
    kind: str = Field(description="The step kind, e.g. transform, ai, gate, callback.")
    name: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    # None: the following step (or the end). A string: that step, or "end".
    # A mapping: outcome -> step or "end", with an optional "default".
    next: str | dict[str, str] | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=50)


class WorkflowDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,79}$")
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    steps: list[StepDefinition] = Field(min_length=1)

    def step(self, step_id: str) -> StepDefinition:
        return self.steps[self.position(step_id)]

    def position(self, step_id: str) -> int:
        """The index of the first step with this id; KeyError if there is none."""
        # The engine asks on every step, so by index rather than by a scan. `steps` is a
        # plain list anyone may change: a hit is checked, and a miss rebuilds once.
        index = self._positions.get(step_id)
        if index is None or index >= len(self.steps) or self.steps[index].id != step_id:
            self.__dict__.pop("_positions", None)
            index = self._positions.get(step_id)
            if index is None:
                raise KeyError(step_id)
        return index

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        # A cached_property lives in the instance __dict__ but is no pydantic field: it is
        # neither dumped nor compared.
        positions: dict[str, int] = {}
        for index, step in enumerate(self.steps):
            positions.setdefault(step.id, index)
        return positions


class DefinitionError(ValueError):
    """A definition that cannot be published. `errors` holds (location, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in errors))


def check_source_size(size: int) -> None:
    """Raise DefinitionError if a source of `size` bytes is over HITL_DEFINITION_MAX_BYTES."""
    limit = settings.HITL_DEFINITION_MAX_BYTES
    if size > limit:
        message = f"larger than {limit:,} bytes"
        raise DefinitionError([("", f"{message} (HITL_DEFINITION_MAX_BYTES)")])


def parse_source(text: str) -> dict[str, Any]:
    """YAML (a superset of JSON) text to a mapping, with a clear error.

    The text is untrusted: it is refused, before it is loaded, if it is too long, nests too
    deep or expands (through YAML aliases) to too many values; see the HITL_DEFINITION_MAX_*
    settings.
    """
    # Characters never outnumber UTF-8 bytes: a text far too long is refused without encoding.
    limit = settings.HITL_DEFINITION_MAX_BYTES
    check_source_size(len(text) if len(text) > limit else len(text.encode("utf-8")))
    try:
        data = bounded_yaml.safe_load(
            text,
            max_depth=settings.HITL_DEFINITION_MAX_DEPTH,
            max_nodes=settings.HITL_DEFINITION_MAX_NODES,
        )
    except bounded_yaml.LimitExceeded as exc:
        raise DefinitionError([("", _limit_message(exc))]) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([("", f"not valid YAML: {exc}")]) from None
    except RecursionError:
        # Only if HITL_DEFINITION_MAX_DEPTH was raised past what the loader's recursion allows.
        message = "nests too deep to load (HITL_DEFINITION_MAX_DEPTH)"
        raise DefinitionError([("", message)]) from None
    if not isinstance(data, dict):
        raise DefinitionError([("", "a definition must be a mapping at the top level")])
    return data


def _limit_message(exc: bounded_yaml.LimitExceeded) -> str:
    if exc.what == "recursion":
        return f"line {exc.line}: a YAML alias refers to itself, which never ends"
    if exc.what == "depth":
        limit = settings.HITL_DEFINITION_MAX_DEPTH
        return (
            f"line {exc.line}: nests deeper than {limit} levels of mappings and lists "
            "(HITL_DEFINITION_MAX_DEPTH)"
        )
    return (
        f"line {exc.line}: more than {settings.HITL_DEFINITION_MAX_NODES:,} keys and values, "
        "counting each use of a YAML alias (HITL_DEFINITION_MAX_NODES)"
    )


def validate_definition(data: Any) -> WorkflowDefinition:
    """Parse and check a definition; raise DefinitionError naming every problem."""
    steps = data.get("steps") if isinstance(data, dict) else None
    limit = settings.HITL_DEFINITION_MAX_STEPS
    if isinstance(steps, list) and len(steps) > limit:
        # Before anything else, so the cost of what follows is bounded by the limit.
        message = f"{len(steps)} steps; at most {limit} are allowed"
        raise DefinitionError([("steps", f"{message} (HITL_DEFINITION_MAX_STEPS)")])
    try:
        definition = WorkflowDefinition.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(_pydantic_errors(exc, data)) from None
    errors: list[tuple[str, str]] = []
    errors += _check_input_schema(definition)
    errors += _check_steps(definition)
    if errors:
        raise DefinitionError(errors)
    return definition


def definition_hash(definition: WorkflowDefinition) -> str:
    return sha256_hex(canonical_json(definition.model_dump(mode="json")))


def definition_json_schema() -> dict[str, Any]:
    """JSON Schema of the format, for editors. Per-kind configs are listed under $defs."""
    schema = WorkflowDefinition.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hitl workflow definition (format 1)"
    kinds = {name: kind.Config.model_json_schema() for name, kind in sorted(registry().items())}
    schema.setdefault("$defs", {})["kind_configs"] = kinds
    return schema


def dump_definition(definition: WorkflowDefinition) -> str:
    data = definition.model_dump(mode="json", exclude_defaults=False)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _step_label(data: Any, index: int) -> str:
    try:
        step_id = data["steps"][index]["id"]
    except (KeyError, IndexError, TypeError):
        return f"steps[{index}]"
    return f"steps[{index}] ({step_id})"


def _pydantic_errors(exc: ValidationError, data: Any) -> list[tuple[str, str]]:
    errors = []
    for error in exc.errors():
        loc = list(error["loc"])
        parts: list[str] = []
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            parts.append(_step_label(data, loc[1]))
            loc = loc[2:]
        else:
            parts.append(str(loc.pop(0)) if loc else "")
        parts += [str(p) for p in loc]
        errors.append((".".join(p for p in parts if p), error["msg"]))
    return errors


def _check_input_schema(definition: WorkflowDefinition) -> list[tuple[str, str]]:
    try:
        jsonschema.Draft202012Validator.check_schema(definition.input_schema)
    except jsonschema.SchemaError as exc:
        return [("input_schema", f"not a valid JSON Schema: {exc.message}")]
    return []


def _check_steps(definition: WorkflowDefinition) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    positions: dict[str, int] = {}
    for index, step in enumerate(definition.steps):
        label = f"steps[{index}] ({step.id})"
        if step.id in positions:
            errors.append((f"{label}.id", f"duplicate step id {step.id!r}"))
            continue
        if step.id == END:
            errors.append((f"{label}.id", f"{END!r} is reserved for the end of the run"))
        positions[step.id] = index
    # Grown one step at a time, so validation stays linear in the number of steps. Kinds get
    # this same mapping (id -> kind, in order): it holds exactly the preceding steps while they
    # are being checked, and a kind looks an id up in constant time.
    earlier: dict[str, str] = {}
    for index, step in enumerate(definition.steps):
        label = f"steps[{index}] ({step.id})"
        try:
            kind = get_kind(step.kind)
        except UnknownKind:
            known = ", ".join(sorted(registry()))
            errors.append((f"{label}.kind", f"unknown step kind {step.kind!r} (known: {known})"))
            earlier.setdefault(step.id, step.kind)
            continue
        config, config_errors = _check_config(label, kind.validate, step.config)
        errors += config_errors
        if not config_errors:
            for problem in kind.check_in_definition(config, step.id, earlier):
                errors.append((f"{label}.config", problem))
        errors += _check_next(label, index, step, kind.outcomes, positions)
        earlier.setdefault(step.id, step.kind)
    return errors


def _check_config(
    label: str, validate: Any, config: dict[str, Any]
) -> tuple[Any, list[tuple[str, str]]]:
    """The validated config and no errors, or None and the errors."""
    try:
        return validate(config), []
    except ValidationError as exc:
        return None, [
            (".".join([label, "config", *(str(p) for p in error["loc"])]), error["msg"])
            for error in exc.errors()
        ]
    except (ValueError, expressions.ExpressionError) as exc:
        return None, [(f"{label}.config", str(exc))]


def _check_next(
    label: str,
    index: int,
    step: StepDefinition,
    outcomes: frozenset[str] | None,
    positions: dict[str, int],
) -> list[tuple[str, str]]:
    if step.next is None:
        return []
    targets = step.next if isinstance(step.next, dict) else {"": step.next}
    errors = []
    for outcome, target in targets.items():
        where = f"{label}.next" + (f".{outcome}" if outcome else "")
        branch = outcome and outcome != DEFAULT_BRANCH
        if branch and outcomes is not None and outcome not in outcomes:
            allowed = ", ".join(sorted(outcomes)) or "none"
            errors.append((where, f"{step.kind} steps have no outcome {outcome!r} ({allowed})"))
        if target == END:
            continue
        if target not in positions:
            errors.append((where, f"no step with id {target!r}"))
        elif positions[target] <= index:
            # Forward-only transitions are what make every v1 definition free of cycles.
            errors.append((where, f"{target!r} does not come after this step (no cycles in v1)"))
    return errors


def schema_as_json() -> str:
    return json.dumps(definition_json_schema(), indent=2, sort_keys=True)
