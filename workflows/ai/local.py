"""The offline local classifier as a LangChain chat model.

`LocalClassifierChatModel` wraps a trained `workflows.ai.classifier.TextClassifier`, so an
AI step has one code path for every model, local or remote. It classifies only the item's
data block of the prompt, never the instructions around it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult

from workflows.ai.classifier import TextClassifier, top_label
from workflows.ai.prompting import unwrap


def _text_to_classify(messages: Sequence[BaseMessage]) -> str:
    """The data block of the last human message (`prompting.build_messages` wrote it), or the
    whole message when it has none: the instructions around the data are never classified."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            data = unwrap(message.text)
            return (message.text if data is None else data).strip()
    raise ValueError("the local classifier needs a human message to classify")


class LocalClassifierChatModel(BaseChatModel):
    """A `TextClassifier` behind LangChain's chat model interface.

    It classifies the last human message (only its data block, if it has one) and
    answers `{"label": ...}` as JSON, with the probabilities and the confidence in
    `response_metadata` and a whitespace token count in `usage_metadata`.
    """

    classifier: TextClassifier
    model_name: str
    model_version: str

    # The same prompt always gets the same answer, so sampling strategies (best-of-n,
    # adaptive) would only repeat it: the AI step refuses them on deterministic models.
    deterministic: ClassVar[bool] = True

    @property
    def _llm_type(self) -> str:
        return "hitl-local-classifier"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "fingerprint": self.classifier.fingerprint,
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = _text_to_classify(messages)
        probabilities = self.classifier.predict_proba(text)
        label, confidence = top_label(probabilities)
        input_tokens = len(text.split())
        message = AIMessage(
            content=json.dumps({"label": label}),
            response_metadata={
                # model_name is also what get_usage_metadata_callback() keys usage by.
                "model_name": self.model_name,
                "model_version": self.model_version,
                "probabilities": probabilities,
                "confidence": confidence,
            },
            usage_metadata=UsageMetadata(
                input_tokens=input_tokens,
                output_tokens=1,
                total_tokens=input_tokens + 1,
            ),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
