"""The one seam that builds every chat model: `build_chat_model(spec)`.

`local:<name>[@<version>]` is an offline classifier, found through a `LocalModelStore` (the
services keep them in the database; this package reads no ORM); anything else goes to
LangChain's `init_chat_model` with `max_retries=0`, because the engine owns retries (through
`due_at`). Tests replace this function, and only this function, with LangChain's fake models.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from langchain_core.language_models.chat_models import BaseChatModel

from workflows.ai.classifier import Example, TextClassifier, train_classifier
from workflows.ai.local import LocalClassifierChatModel

LOCAL_PREFIX = "local:"


class ModelSpecError(ValueError):
    """A model spec that cannot name a model (bad syntax, unknown local model)."""


@dataclass(frozen=True)
class ModelOptions:
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    logprobs: bool = False


@dataclass(frozen=True)
class LocalModelRef:
    """One stored version of a local model; the fingerprint names its training set."""

    name: str
    version: int
    fingerprint: str


@dataclass(frozen=True)
class TrainingSet:
    examples: list[Example]
    seed: int
    params: dict[str, Any]


class LocalModelStore(Protocol):
    """Where local models are kept: the latest or a pinned version, and its training set."""

    def find(self, name: str, version: int | None) -> LocalModelRef | None:
        """The version asked for (the latest with None), or None if there is none."""

    def training_set(self, ref: LocalModelRef) -> TrainingSet:
        """What the version was trained from, to rebuild it deterministically."""


def parse_local_spec(spec: str) -> tuple[str, int | None]:
    """`local:tickets@3` -> ("tickets", 3); `local:tickets` -> ("tickets", None)."""
    rest = spec.removeprefix(LOCAL_PREFIX)
    name, _, version = rest.partition("@")
    if not name:
        raise ModelSpecError(f"{spec!r}: a local model spec is local:<name>[@<version>]")
    if version and not version.isdigit():
        raise ModelSpecError(f"{spec!r}: the version after @ must be a number")
    return name, int(version) if version else None


def is_local(spec: str) -> bool:
    return spec.startswith(LOCAL_PREFIX)


def build_chat_model(
    spec: str,
    options: ModelOptions | None = None,
    *,
    local_models: LocalModelStore | None = None,
) -> BaseChatModel:
    options = options or ModelOptions()
    if is_local(spec):
        if local_models is None:
            raise ModelSpecError(f"{spec!r}: local models are not available here")
        return _local_model(spec, local_models)
    return _provider_model(spec, options)


def _provider_model(spec: str, options: ModelOptions) -> BaseChatModel:
    from langchain.chat_models import init_chat_model

    if ":" not in spec:
        raise ModelSpecError(f"{spec!r}: name the provider, e.g. openai:gpt-4o-mini")
    provider = spec.split(":", 1)[0]
    kwargs: dict[str, Any] = {
        "max_retries": 0,
        "timeout": options.timeout or settings.HITL_AI_TIMEOUT,
    }
    if options.temperature is not None:
        kwargs["temperature"] = options.temperature
    if options.max_tokens is not None:
        kwargs["max_tokens"] = options.max_tokens
    if options.logprobs:
        kwargs["logprobs"] = True
    # Credentials and base URLs come from the environment (OPENAI_API_KEY, OPENAI_BASE_URL for
    # any OpenAI-compatible server such as vLLM or llama.cpp, ANTHROPIC_API_KEY, OLLAMA_HOST);
    # settings may add per-provider keyword arguments.
    kwargs.update(settings.HITL_AI_PROVIDER_OPTIONS.get(provider, {}))
    try:
        return init_chat_model(spec, **kwargs)
    except (ValueError, ImportError) as exc:
        raise ModelSpecError(f"{spec!r}: {exc}") from None


def _local_model(spec: str, store: LocalModelStore) -> BaseChatModel:
    name, version = parse_local_spec(spec)
    ref = store.find(name, version)
    if ref is None:
        wanted = f"{name}@{version}" if version is not None else name
        raise ModelSpecError(f"no local model {wanted!r}: train one with `manage.py localmodel`")
    classifier = _classifier(ref, store)
    return LocalClassifierChatModel(
        classifier=classifier, model_name=f"local:{name}", model_version=str(ref.version)
    )


_training_lock = threading.Lock()
# Versions are immutable: rebuild once per process, then serve from memory. Keyed by the
# fingerprint too, so a store that reuses a version number never serves a stale model.
_classifiers: dict[LocalModelRef, TextClassifier] = {}
_MAX_CACHED = 16


def _classifier(ref: LocalModelRef, store: LocalModelStore) -> TextClassifier:
    with _training_lock:
        classifier = _classifiers.get(ref)
        if classifier is None:
            training = store.training_set(ref)
            classifier = train_classifier(
                training.examples, seed=training.seed, params=training.params
            )
            if len(_classifiers) >= _MAX_CACHED:
                _classifiers.pop(next(iter(_classifiers)))
            _classifiers[ref] = classifier
        return classifier
