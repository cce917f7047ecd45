"""The real seam: local models from the database, providers through init_chat_model."""

from __future__ import annotations

import uuid
from io import StringIO
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from workflows import services
from workflows.ai import limits, seam
from workflows.ai.classifier import Example
from workflows.errors import InvalidInput
from workflows.models import AuditEvent, LocalModel
from workflows.services.hooks import LOCAL_MODELS

pytestmark = pytest.mark.django_db

EXAMPLES = [
    Example(text=f"{word} {i}", label=label)
    for i in range(12)
    for word, label in (("refund my invoice", "billing"), ("app crashes on start", "technical"))
]


def test_training_stores_a_new_version_with_metrics_and_an_audit_event(system: Any) -> None:
    first = services.local_model_train(name="mini", examples=EXAMPLES, actor=system)
    second = services.local_model_train(name="mini", examples=EXAMPLES[:-2], actor=system)
    assert (first.version, second.version) == (1, 2)
    assert first.labels == ["billing", "technical"]
    assert first.metrics["n"] > 0
    assert first.fingerprint != second.fingerprint
    assert AuditEvent.objects.filter(verb="local_model.trained").count() == 2


def test_training_refuses_a_bad_training_set(system: Any) -> None:
    with pytest.raises(InvalidInput, match="cannot train 'mini'"):
        services.local_model_train(
            name="mini", examples=[Example("a", "x"), Example("b", "x")], actor=system
        )
    assert not LocalModel.objects.exists()


def test_a_local_spec_builds_the_stored_classifier(system: Any) -> None:
    services.local_model_train(name="mini", examples=EXAMPLES, actor=system)
    services.local_model_train(name="mini", examples=EXAMPLES[2:], actor=system)
    latest = seam.build_chat_model("local:mini", local_models=LOCAL_MODELS)
    pinned = seam.build_chat_model("local:mini@1", local_models=LOCAL_MODELS)
    assert latest.model_version == "2"  # type: ignore[attr-defined]
    assert pinned.model_version == "1"  # type: ignore[attr-defined]
    reply = pinned.invoke([("human", "please refund my invoice")])
    assert reply.content == '{"label": "billing"}'
    assert reply.response_metadata["confidence"] > 0.5
    with pytest.raises(seam.ModelSpecError, match="no local model 'mini@7'"):
        seam.build_chat_model("local:mini@7", local_models=LOCAL_MODELS)
    with pytest.raises(seam.ModelSpecError, match="version after @"):
        seam.build_chat_model("local:mini@latest", local_models=LOCAL_MODELS)


def test_provider_specs_build_clients_that_never_retry(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    settings.HITL_AI_PROVIDER_OPTIONS = {"openai": {"base_url": "http://127.0.0.1:9/v1"}}
    openai_model = seam.build_chat_model(
        "openai:gpt-4o-mini", seam.ModelOptions(temperature=0.3, max_tokens=50, timeout=7)
    )
    assert type(openai_model).__name__ == "ChatOpenAI"
    assert openai_model.max_retries == 0  # type: ignore[attr-defined]
    assert openai_model.openai_api_base == "http://127.0.0.1:9/v1"  # type: ignore[attr-defined]
    assert openai_model.request_timeout == 7  # type: ignore[attr-defined]
    anthropic_model = seam.build_chat_model("anthropic:claude-3-5-haiku-latest")
    assert type(anthropic_model).__name__ == "ChatAnthropic"
    assert anthropic_model.max_retries == 0  # type: ignore[attr-defined]
    with pytest.raises(seam.ModelSpecError, match="name the provider"):
        seam.build_chat_model("gpt-4o")


def test_the_provider_rate_limit_holds_across_callers(settings: Any) -> None:
    provider = f"prov{uuid.uuid4().hex[:8]}"
    settings.HITL_AI_RATE_LIMITS = {provider: 5}
    now = 1_900_000_000.0
    limits.take_calls(provider, 3, now=now)
    limits.take_calls(provider, 2, now=now)
    with pytest.raises(limits.RateLimited) as info:
        limits.take_calls(provider, 1, now=now + 10)
    assert info.value.retry_after == pytest.approx(60 - ((now + 10) % 60))
    limits.take_calls(provider, 5, now=now + 60)  # a new window
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    assert int(client.get(f"hitl:rate:{provider}:{int(now // 60)}") or 0) == 6
    limits.take_calls("unlimited", 10_000, now=now)


def test_the_localmodel_command_trains_from_jsonl(tmp_path: Any) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(
        "\n".join(f'{{"text": "{e.text}", "label": "{e.label}"}}' for e in EXAMPLES) + "\n"
    )
    out = StringIO()
    call_command("localmodel", "train", "cli", str(data), stdout=out)
    assert out.getvalue().startswith("local:cli@1: 24 examples")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n')
    with pytest.raises(CommandError, match="line 1"):
        call_command("localmodel", "train", "cli", str(bad), stdout=StringIO())
