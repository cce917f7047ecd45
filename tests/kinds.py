"""Step kinds that exist only for tests, registered through HITL_EXTRA_STEP_KINDS.

`probe` records every execution in a log file and can sleep, fail or kill its own process,
so fault tests can count effects and lose workers on purpose. With `answer`, it answers like a
classifier from its input (`label`, `score`, `model_version`), so gate tests can script what a
gate sees without a model.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from workflows.steps.base import Completed, Failed, KindConfig, Result, StepContext, StepKind


class ProbeConfig(KindConfig):
    sleep: float = 0.0
    die: bool = False
    fail: str | None = None
    retryable: bool = True
    # A line to log while executing (the structured-log tests look for its ids).
    say: str | None = None
    # Answer {"label": input.label} with confidence input.score, recording input.model_version
    # (when given) as an AI step records the version of the model that answered.
    answer: bool = False


class ProbeKind(StepKind):
    name = "probe"
    outcomes = None
    Config = ProbeConfig

    def execute(self, ctx: StepContext) -> Result:
        config: ProbeConfig = ctx.config
        log = (ctx.input or {}).get("log") if isinstance(ctx.input, dict) else None
        if log:
            with Path(log).open("a") as handle:
                handle.write(f"{ctx.run_id}:{ctx.step_id}:{ctx.attempt}:{os.getpid()}\n")
        if config.say:
            logging.getLogger("tests.kinds").warning("%s", config.say)
        if config.sleep:
            time.sleep(config.sleep)
        if config.die:
            os.kill(os.getpid(), signal.SIGKILL)
        if config.fail:
            return Failed(config.fail, retryable=config.retryable)
        if config.answer:
            data = ctx.input if isinstance(ctx.input, dict) else {}
            meta = {"model_version": data["model_version"]} if "model_version" in data else {}
            return Completed(
                output={"label": data.get("label")}, confidence=data.get("score"), meta=meta
            )
        return Completed(output={"step": ctx.step_id, "attempt": ctx.attempt})


KIND = ProbeKind()
