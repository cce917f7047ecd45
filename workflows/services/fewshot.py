"""Few-shot examples from past decisions, for `ai` steps that ask `examples: {from_reviews}`.

For a workflow step, the candidates are its reviewed gate items on the training side of the
evaluation split with a final output (approved or edited; rejections have none), read with
the exports' reader (`dataset_items`). Each is the data the step saw (its `input` expression)
and the final human output. They are indexed by TF-IDF (`workflows.ai.fewshot`) and cached
in-process per (workflow, step).

Invalidation: every lookup first reads one stamp, the count and the highest id of the
workflow's final decisions (plus the split rate). Decisions are only ever added, so a new one
changes the stamp and the index is rebuilt before it is used; an unchanged stamp means the
cached index is exactly what a rebuild would give.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.db.models import Count, Max

from workflows.ai.fewshot import SimilarityIndex
from workflows.datasets import Skip, step_data
from workflows.learning import classifier_text
from workflows.models import Decision, Workflow
from workflows.services.datasets import DatasetFilters, dataset_items
from workflows.splits import TRAIN, check_rate, split_of
from workflows.steps.base import ReviewExample

_MAX_CACHED = 64
_lock = threading.Lock()
# (workflow id, step id) -> (stamp, index, candidates in index order)
_indexes: dict[tuple[int, str], tuple[Any, SimilarityIndex, list[ReviewExample]]] = {}


def review_examples(*, workflow_id: int, step_id: str, data: Any, k: int) -> list[ReviewExample]:
    """The k candidates most similar to `data`, most similar first, with their similarity."""
    index, candidates = _index(workflow_id, step_id)
    found = index.nearest(classifier_text(data), k)
    return [
        ReviewExample(
            run_id=candidates[i].run_id,
            input=candidates[i].input,
            output=candidates[i].output,
            similarity=score,
        )
        for i, score in found
    ]


def _stamp(workflow_id: int) -> tuple[int, int, float]:
    row = (
        Decision.objects.filter(task__workflow_id=workflow_id)
        .exclude(action=Decision.Action.ESCALATE)
        .aggregate(n=Count("pk"), last=Max("pk"))
    )
    return row["n"], row["last"] or 0, check_rate(settings.HITL_EVAL_SPLIT_RATE)


def _index(workflow_id: int, step_id: str) -> tuple[SimilarityIndex, list[ReviewExample]]:
    stamp = _stamp(workflow_id)
    key = (workflow_id, step_id)
    with _lock:
        cached = _indexes.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
    candidates = _candidates(workflow_id, step_id, rate=stamp[2])
    index = SimilarityIndex([classifier_text(c.input) for c in candidates])
    with _lock:
        if key not in _indexes and len(_indexes) >= _MAX_CACHED:
            _indexes.pop(next(iter(_indexes)))
        _indexes[key] = (stamp, index, candidates)
    return index, candidates


def _candidates(workflow_id: int, step_id: str, *, rate: float) -> list[ReviewExample]:
    slug = Workflow.objects.values_list("slug", flat=True).get(pk=workflow_id)
    found: list[ReviewExample] = []
    for item in dataset_items(DatasetFilters(workflows=(slug,))):
        if item.guarded_step != step_id or item.final_output is None:
            continue
        if split_of(item.workflow, item.run_input, run_id=item.run_id, rate=rate) != TRAIN:
            continue
        try:
            data = step_data(item)
        except Skip:
            continue
        found.append(ReviewExample(item.run_id, data, item.final_output, similarity=0.0))
    return found
