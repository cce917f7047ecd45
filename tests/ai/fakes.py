"""LangChain's fake chat models, injected at the one model seam (`build_chat_model`)."""

from __future__ import annotations

import json
import threading
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr


def answer(
    value: Any, *, tokens: tuple[int, int] = (100, 10), logprob: float | None = None
) -> AIMessage:
    content = value if isinstance(value, str) else json.dumps(value)
    metadata: dict[str, Any] = {"model_name": "fake"}
    if logprob is not None:
        metadata["logprobs"] = {"content": [{"token": content, "logprob": logprob}]}
    return AIMessage(
        content=content,
        response_metadata=metadata,
        usage_metadata={
            "input_tokens": tokens[0],
            "output_tokens": tokens[1],
            "total_tokens": sum(tokens),
        },
    )


class ScriptedModel(GenericFakeChatModel):
    """GenericFakeChatModel answering from a script, one item per call (thread-safe under
    `.batch`), keeping every prompt. An exception in the script is raised, as a provider would."""

    _script: list[Any] = PrivateAttr(default_factory=list)
    _prompts: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, script: list[AIMessage | Exception], **kwargs: Any):
        super().__init__(messages=iter(()), **kwargs)
        self._script = list(script)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        with self._lock:
            self._prompts.append(messages)
            if not self._script:
                raise AssertionError("the model was called more often than scripted")
            item = self._script.pop(0)
        if isinstance(item, Exception):
            raise item
        return ChatResult(generations=[ChatGeneration(message=item)])

    @property
    def prompts(self) -> list[list[BaseMessage]]:
        return self._prompts

    @property
    def calls(self) -> int:
        return len(self._prompts)


class ProviderTimeout(TimeoutError):
    """What an HTTP client raises when a provider does not answer in time."""


class AuthenticationError(Exception):
    status_code = 401
