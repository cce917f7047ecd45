from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server import Server


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server().start()
    yield running
    running.stop()


class Clock:
    """A monotonic clock that moves only when told: by a fake sleep, or by the fake server
    "waiting" as long as a request asked. No test reads the wall clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()
