"""The fixed evaluation split: which reviewed items are held out, once and for all."""

from __future__ import annotations

import hashlib

import pytest
from django.core.exceptions import ImproperlyConfigured

from workflows.splits import EVAL, TRAIN, input_id, split_key, split_of, split_point


def test_the_point_is_the_first_32_bits_of_the_keys_sha256() -> None:
    key = "triage:ticket-7"
    expected = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32
    assert split_point(key) == expected
    assert 0 <= split_point(key) < 1


def test_the_key_is_the_input_id_when_the_input_has_one_else_the_run_id() -> None:
    assert split_key("triage", {"id": "ticket-7", "text": "hi"}, 41) == "triage:ticket-7"
    assert split_key("triage", {"id": 12}, 41) == "triage:12"
    # No id, an id that is not plain (a bool, a dict), or input that is no object: the run.
    for run_input in ({"text": "hi"}, {"id": True}, {"id": {"n": 1}}, "text", None):
        assert split_key("triage", run_input, 41) == "triage:41"


def test_the_same_item_gets_the_same_split_every_time_and_on_every_run_of_it() -> None:
    first = [split_of("triage", {"id": f"t{i}"}, run_id=i, rate=0.1) for i in range(500)]
    again = [split_of("triage", {"id": f"t{i}"}, run_id=i, rate=0.1) for i in range(500)]
    # The same ticket started again (another run id) stays on its side of the split.
    rerun = [split_of("triage", {"id": f"t{i}"}, run_id=10_000 + i, rate=0.1) for i in range(500)]
    assert first == again == rerun
    assert set(first) == {TRAIN, EVAL}


def test_new_items_never_move_old_ones() -> None:
    old = {i: split_of("triage", None, run_id=i, rate=0.1) for i in range(1000)}
    for i in range(1000, 3000):
        split_of("triage", None, run_id=i, rate=0.1)
    assert {i: split_of("triage", None, run_id=i, rate=0.1) for i in range(1000)} == old


def test_the_eval_share_is_close_to_the_rate_on_10k_ids() -> None:
    for rate in (0.1, 0.25):
        held = sum(split_of("triage", None, run_id=i, rate=rate) == EVAL for i in range(10_000))
        # Binomial(10k, rate): 4.5 standard deviations is at most ~135 items at 0.25.
        assert abs(held - 10_000 * rate) < 4.5 * (10_000 * rate * (1 - rate)) ** 0.5


def test_train_and_eval_are_disjoint_and_cover_everything() -> None:
    keys = [f"{slug}:{i}" for slug in ("triage", "refunds") for i in range(5000)]
    train = {key for key in keys if split_point(key) >= 0.1}
    held = {key for key in keys if split_point(key) < 0.1}
    assert train.isdisjoint(held)
    assert train | held == set(keys)
    # The workflow is part of the key: the same id in two workflows is drawn independently.
    same = sum(
        split_of("triage", None, run_id=i, rate=0.5)
        == split_of("refunds", None, run_id=i, rate=0.5)
        for i in range(2000)
    )
    assert 800 < same < 1200


def test_raising_the_rate_only_adds_items_to_eval() -> None:
    ids = range(5000)
    at_10 = {i for i in ids if split_of("triage", None, run_id=i, rate=0.10) == EVAL}
    at_20 = {i for i in ids if split_of("triage", None, run_id=i, rate=0.20) == EVAL}
    assert at_10 < at_20


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_a_rate_outside_0_1_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_of("triage", None, run_id=1, rate=rate)


def test_input_id_is_the_inputs_plain_top_level_id() -> None:
    assert input_id({"id": "a"}) == "a"
    assert input_id({"id": 3}) == 3
    assert input_id({"id": False}) is None
    assert input_id(["id"]) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0.2", None), ("", None), ("abc", "a number"), ("1.5", "between 0 and 1"), ("-1", "between")],
)
def test_the_setting_is_read_from_the_environment_and_checked(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str | None
) -> None:
    from hitl.settings import eval_split_rate

    monkeypatch.setenv("HITL_EVAL_SPLIT_RATE", value)
    if problem is None:
        assert eval_split_rate() == (float(value) if value else 0.10)
        return
    with pytest.raises(ImproperlyConfigured, match=problem):
        eval_split_rate()
