from __future__ import annotations

import random
from datetime import timedelta

from workflows import engine
from workflows.definitions import validate_definition


def wf(steps: list[dict]) -> object:
    return validate_definition({"slug": "e", "name": "E", "steps": steps})


def test_it_starts_at_the_first_step() -> None:
    d = wf([{"id": "a", "kind": "wait"}, {"id": "b", "kind": "wait"}])
    assert engine.first_step(d) == engine.Next("a", 0, "wait")


def test_it_goes_to_the_following_step_by_default_and_finishes_after_the_last() -> None:
    d = wf([{"id": "a", "kind": "wait"}, {"id": "b", "kind": "wait"}])
    assert engine.after(d, "a", "") == engine.Next("b", 1, "wait")
    assert engine.after(d, "b", "") == engine.Finish()


def test_it_follows_named_outcome_branches() -> None:
    d = wf(
        [
            {"id": "a", "kind": "wait", "next": {"approved": "c", "other": "end"}},
            {"id": "b", "kind": "wait"},
            {"id": "c", "kind": "wait"},
        ]
    )
    assert engine.after(d, "a", "approved") == engine.Next("c", 2, "wait")
    assert engine.after(d, "a", "other") == engine.Finish()
    # an outcome with no branch falls through to the following step
    assert engine.after(d, "a", "unmapped") == engine.Next("b", 1, "wait")


def test_a_rejection_ends_the_run_unless_routed() -> None:
    d = wf([{"id": "a", "kind": "wait"}, {"id": "b", "kind": "wait"}])
    assert engine.after(d, "a", "rejected") == engine.Finish()
    routed = wf(
        [{"id": "a", "kind": "wait", "next": {"rejected": "b"}}, {"id": "b", "kind": "wait"}]
    )
    assert engine.after(routed, "a", "rejected") == engine.Next("b", 1, "wait")


def test_default_branch_is_used_for_unlisted_outcomes() -> None:
    d = wf(
        [
            {"id": "a", "kind": "wait", "next": {"x": "b", "default": "end"}},
            {"id": "b", "kind": "wait"},
        ]
    )
    assert engine.after(d, "a", "y") == engine.Finish()


def test_run_outcome_is_the_latest_decisive_outcome() -> None:
    assert engine.run_outcome("", "") == ""
    assert engine.run_outcome("", "approved") == "approved"
    assert engine.run_outcome("approved", "whatever") == "approved"
    assert engine.run_outcome("approved", "rejected") == "rejected"


def test_retry_delay_grows_exponentially_with_bounded_jitter() -> None:
    rng = random.Random(1)
    first = engine.retry_delay(1, base=2, cap=600, rng=rng)
    third = engine.retry_delay(3, base=2, cap=600, rng=rng)
    assert timedelta(seconds=2) <= first < timedelta(seconds=4)
    assert timedelta(seconds=8) <= third < timedelta(seconds=10)
    capped = engine.retry_delay(30, base=2, cap=60, rng=rng)
    assert timedelta(seconds=60) <= capped < timedelta(seconds=62)
