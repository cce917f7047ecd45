"""The one seam that builds every chat model: `build_chat_model(spec)`.

`local:<name>[@<version>]` is the offline classifier stored in the database; anything else goes
to LangChain's `init_chat_model` with `max_retries=0`, because the engine owns retries (through
`due_at`). Tests replace this function, and only this function, with LangChain's fake models.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from langchain_core.language_models.chat_models import BaseChatModel

from workflows.ai.local import Example, LocalClassifierChatModel, TextClassifier, train_classifier

LOCAL_PREFIX = "local:"


class ModelSpecError(ValueError):
    """A model spec that cannot name a model (bad syntax, unknown local model)."""


@dataclass(frozen=True)
class ModelOptions:
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    logprobs: bool = False


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


def build_chat_model(spec: str, options: ModelOptions | None = None) -> BaseChatModel:
    options = options or ModelOptions()
    if is_local(spec):
        return _local_model(spec)
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


def _local_model(spec: str) -> BaseChatModel:
    from workflows.models import LocalModel

    name, version = parse_local_spec(spec)
    rows = LocalModel.objects.filter(name=name)
    if version is not None:
        rows = rows.filter(version=version)
    row = rows.order_by("-version").values("version", "fingerprint").first()
    if row is None:
        wanted = f"{name}@{version}" if version is not None else name
        raise ModelSpecError(f"no local model {wanted!r}: train one with `manage.py localmodel`")
    classifier = _classifier(name, row["version"], row["fingerprint"])
    return LocalClassifierChatModel(
        classifier=classifier, model_name=f"local:{name}", model_version=str(row["version"])
    )


_training_lock = threading.Lock()


@functools.lru_cache(maxsize=16)
def _cached_classifier(name: str, version: int, fingerprint: str) -> TextClassifier:
    from workflows.models import LocalModel

    row = LocalModel.objects.get(name=name, version=version)
    examples = [Example(text=e["text"], label=e["label"]) for e in row.examples]
    return train_classifier(examples, seed=row.seed, params=row.params)


def _classifier(name: str, version: int, fingerprint: str) -> TextClassifier:
    # Versions are immutable: rebuild once per process, then serve from memory.
    with _training_lock:
        return _cached_classifier(name, version, fingerprint)
