"""The fixed evaluation split: which items are held out from training, once and for all.

An item is in the evaluation set when the first 32 bits of sha256("<workflow>:<item>"), read
as a fraction of 2**32, fall below the rate (`HITL_EVAL_SPLIT_RATE`). The item is the run
input's own `id` when it has one, else the run's id: the same ticket started twice lands on
the same side, so a model is never trained on an item it is then scored on.

The split depends on nothing but those stable ids and the rate: it is the same on every call,
in every process, however much data arrives later, so an item that entered the evaluation set
stays there. Raising the rate only moves items from train to eval (a point under 0.1 is also
under 0.2); lowering it moves eval items into train, which leaks them into training data of
models that are later scored on them: see docs/datasets.md before changing the rate.

Dataset exports and the learning loop (training and calibration) read the split here, and
only here. The module is pure: no Django, no I/O.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

TRAIN = "train"
EVAL = "eval"
SPLITS = (TRAIN, EVAL)


def input_id(value: Any) -> str | int | None:
    """The run input's own identifier, its top-level `id`, if it has a plain one."""
    if isinstance(value, dict):
        found = value.get("id")
        if isinstance(found, str | int) and not isinstance(found, bool):
            return found
    return None


def split_key(workflow_slug: str, run_input: Any, run_id: int) -> str:
    """What the split hashes: the workflow and the item's input id, or its run id."""
    item = input_id(run_input)
    return f"{workflow_slug}:{run_id if item is None else item}"


def split_point(key: str) -> float:
    """Where `key` falls in [0, 1): the first 32 bits of its sha256, over 2**32."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def split_of(workflow_slug: str, run_input: Any, *, run_id: int, rate: float) -> str:
    """`eval` for the held-out share `rate` of the items, `train` for the rest."""
    check_rate(rate)
    return EVAL if split_point(split_key(workflow_slug, run_input, run_id)) < rate else TRAIN


def check_rate(rate: float) -> float:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and 0 <= rate <= 1):
        raise ValueError(f"the evaluation split rate must be between 0 and 1, not {rate!r}")
    return float(rate)
