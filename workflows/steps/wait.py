"""`wait`: pauses the run until `run_resume` completes the step.

It proves that pausing works independently of gates, and serves as a manual hand-off point.
"""

from __future__ import annotations

from workflows.steps.base import KindConfig, Result, StepContext, StepKind, Waiting


class WaitConfig(KindConfig):
    reason: str = "waiting for run_resume"


class WaitKind(StepKind):
    name = "wait"
    outcomes = None
    Config = WaitConfig

    def execute(self, ctx: StepContext) -> Result:
        config: WaitConfig = ctx.config
        return Waiting(reason=config.reason)


KIND = WaitKind()
