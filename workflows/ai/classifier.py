"""The offline local model: a small, real text classifier with calibrated probabilities.

hitl must run AI steps with no network and no API key, in the demo and in the tests. This
module is that model: TF-IDF features (word 1-2-grams and character n-grams) feeding a
multinomial logistic regression, whose `predict_proba` is the step's confidence.

A model is never stored as a pickle. The database keeps its training set and
hyper-parameters; a worker rebuilds it on first use with `train_classifier` (deterministic,
well under a second for a few thousand examples) and caches it in-process under its
`fingerprint`. There is therefore nothing to unpickle, and a model is exactly as auditable
as the examples it was trained on. `workflows.ai.local` wraps it as a LangChain chat model.

This module imports neither Django nor LangChain: storage and caching live elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_PARAMS",
    "MIN_EXAMPLES_PER_LABEL",
    "Example",
    "TextClassifier",
    "evaluate",
    "set_aside_thin_labels",
    "split",
    "top_label",
    "train_classifier",
    "training_fingerprint",
]

# Below this, a label's probabilities are noise, and a stratified split cannot put an
# example of it on both sides.
MIN_EXAMPLES_PER_LABEL = 3

# Chosen on the demo ticket set for held-out accuracy, calibration error and training time
# (see the tests). C is the inverse regularisation strength: higher makes the model more
# confident. min_df=2 drops n-grams seen once, which halves the features and the fit time
# at no cost in accuracy.
DEFAULT_PARAMS: Mapping[str, Any] = {
    "C": 10.0,
    "word_ngram_max": 2,
    "char_ngram_min": 3,
    "char_ngram_max": 4,
    "min_df": 2,
    "sublinear_tf": True,
    "class_weight": None,
    "max_iter": 1000,
}

# Bumped when the meaning of the fingerprinted inputs changes (for example the text
# normalisation), so an old cached model is never mistaken for a new one.
_FINGERPRINT_FORMAT = 1


@dataclass(frozen=True)
class Example:
    """One labelled text."""

    text: str
    label: str


def _resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    resolved = dict(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if key not in DEFAULT_PARAMS:
            known = ", ".join(sorted(DEFAULT_PARAMS))
            raise ValueError(f"unknown local model parameter {key!r} (known: {known})")
        resolved[key] = value
    # Coerce, so that {"C": 10} and {"C": 10.0} are the same model with the same fingerprint,
    # and whatever came out of a JSON column is hashed in one canonical form.
    try:
        for key in ("word_ngram_max", "char_ngram_min", "char_ngram_max", "min_df", "max_iter"):
            resolved[key] = int(resolved[key])
        resolved["C"] = float(resolved["C"])
        resolved["sublinear_tf"] = bool(resolved["sublinear_tf"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad local model parameter: {exc}") from exc
    if not 1 <= resolved["word_ngram_max"] <= 3:
        raise ValueError("word_ngram_max must be 1, 2 or 3")
    if not 1 <= resolved["char_ngram_min"] <= resolved["char_ngram_max"] <= 6:
        raise ValueError("need 1 <= char_ngram_min <= char_ngram_max <= 6")
    if resolved["min_df"] < 1 or resolved["max_iter"] < 1:
        raise ValueError("min_df and max_iter must be at least 1")
    if not (math.isfinite(resolved["C"]) and resolved["C"] > 0):
        raise ValueError("C must be a positive number")
    if resolved["class_weight"] not in (None, "balanced"):
        raise ValueError("class_weight must be None or 'balanced'")
    return resolved


def _canonical_examples(examples: Iterable[Example]) -> list[tuple[str, str]]:
    pairs = []
    for example in examples:
        if not isinstance(example.label, str) or not example.label:
            raise ValueError(f"every example needs a non-empty string label: {example!r}")
        if not isinstance(example.text, str):
            raise ValueError(f"every example needs a string text: {example!r}")
        pairs.append((example.label, example.text))
    # Sorting makes the model a function of the multiset of examples: the order they came
    # out of the database in changes neither the fingerprint nor the floating-point sums of
    # the fit.
    return sorted(pairs)


def _fingerprint(canonical: list[tuple[str, str]], seed: int, params: Mapping[str, Any]) -> str:
    payload = {
        "format": _FINGERPRINT_FORMAT,
        "examples": canonical,
        "params": dict(params),
        "seed": seed,
        # A different scikit-learn may fit different weights from the same inputs.
        "sklearn": package_version("scikit-learn"),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def training_fingerprint(
    examples: Sequence[Example], *, seed: int = 0, params: Mapping[str, Any] | None = None
) -> str:
    """The fingerprint `train_classifier` would give, without training: a cache key."""
    return _fingerprint(_canonical_examples(examples), seed, _resolve_params(params))


def _check_training_set(canonical: list[tuple[str, str]]) -> None:
    counts: dict[str, int] = defaultdict(int)
    for label, _ in canonical:
        counts[label] += 1
    if len(counts) < 2:
        raise ValueError(
            f"a classifier needs at least 2 labels, the training set has {len(counts)}"
        )
    thin = {label: n for label, n in sorted(counts.items()) if n < MIN_EXAMPLES_PER_LABEL}
    if thin:
        described = ", ".join(f"{label!r}: {n}" for label, n in thin.items())
        raise ValueError(
            f"each label needs at least {MIN_EXAMPLES_PER_LABEL} examples; too few for {described}"
        )


def set_aside_thin_labels(examples: Sequence[Example]) -> tuple[list[Example], dict[str, int]]:
    """The examples of labels with at least MIN_EXAMPLES_PER_LABEL, and the others' counts.

    One rare label (a category reviewers used twice) would otherwise make the whole training
    set unusable; left out, the model simply cannot predict it yet, and the caller says so.
    """
    counts: dict[str, int] = defaultdict(int)
    for example in examples:
        counts[example.label] += 1
    thin = {label: n for label, n in sorted(counts.items()) if n < MIN_EXAMPLES_PER_LABEL}
    return [e for e in examples if e.label not in thin], thin


def _build_pipeline(params: Mapping[str, Any], seed: int) -> Any:
    # scikit-learn takes about a second to import. Importing it here, not at the top,
    # keeps it out of processes that only build chat models by name (the web process) and
    # never train one.
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    features = FeatureUnion(
        [
            (
                "words",
                TfidfVectorizer(
                    analyzer="word",
                    ngram_range=(1, params["word_ngram_max"]),
                    min_df=params["min_df"],
                    sublinear_tf=params["sublinear_tf"],
                    lowercase=True,
                ),
            ),
            (
                # Character n-grams within word boundaries survive the typos that real
                # tickets are full of ("recieved", "pasword").
                "chars",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(params["char_ngram_min"], params["char_ngram_max"]),
                    min_df=params["min_df"],
                    sublinear_tf=params["sublinear_tf"],
                    lowercase=True,
                ),
            ),
        ]
    )
    # Multinomial logistic regression optimises log loss directly, so its probabilities
    # are reasonably calibrated without a CalibratedClassifierCV (which would cost a
    # k-fold refit). newton-cg converges in a handful of iterations here, about three times
    # faster than lbfgs, and is deterministic; random_state only matters to other solvers.
    model = LogisticRegression(
        C=params["C"],
        class_weight=params["class_weight"],
        max_iter=params["max_iter"],
        solver="newton-cg",
        random_state=seed,
    )
    return Pipeline([("features", features), ("model", model)])


class TextClassifier:
    """A trained classifier. Build one with `train_classifier`, never directly."""

    def __init__(
        self,
        *,
        pipeline: Any,
        labels: tuple[str, ...],
        fingerprint: str,
        seed: int,
        params: Mapping[str, Any],
        n_examples: int,
    ) -> None:
        self._pipeline = pipeline
        self._labels = labels
        self._fingerprint = fingerprint
        self._seed = seed
        self._params = dict(params)
        self._n_examples = n_examples

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels it can predict, sorted."""
        return self._labels

    @property
    def fingerprint(self) -> str:
        """sha256 over the canonical training set, hyper-parameters, seed and sklearn version."""
        return self._fingerprint

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def params(self) -> dict[str, Any]:
        """The resolved hyper-parameters (defaults filled in)."""
        return dict(self._params)

    @property
    def n_examples(self) -> int:
        return self._n_examples

    def predict_proba_many(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Probabilities per label for each text; one vectorised call for the lot."""
        if not texts:
            return []
        matrix = self._pipeline.predict_proba(list(texts))
        return [
            {label: float(p) for label, p in zip(self._labels, row, strict=True)} for row in matrix
        ]

    def predict_proba(self, text: str) -> dict[str, float]:
        """Probability of each label for `text`; the values sum to 1."""
        return self.predict_proba_many([text])[0]

    def predict(self, text: str) -> tuple[str, float]:
        """The most probable label and its probability."""
        return top_label(self.predict_proba(text))

    def __repr__(self) -> str:
        return (
            f"<TextClassifier labels={list(self._labels)} n={self._n_examples} "
            f"fingerprint={self._fingerprint[:12]}>"
        )


def top_label(probabilities: Mapping[str, float]) -> tuple[str, float]:
    """The most probable label; a tie goes to the label that sorts first, never to chance."""
    label = min(probabilities, key=lambda name: (-probabilities[name], name))
    return label, probabilities[label]


def train_classifier(
    examples: Sequence[Example], *, seed: int = 0, params: Mapping[str, Any] | None = None
) -> TextClassifier:
    """Train a classifier. The same examples (in any order), seed and params give the same
    probabilities and fingerprint. Raises ValueError on an unusable training set or params."""
    resolved = _resolve_params(params)
    canonical = _canonical_examples(examples)
    _check_training_set(canonical)
    pipeline = _build_pipeline(resolved, seed)
    # One BLAS thread: the fit is small, extra threads only fight the worker's other
    # processes on a 2-core machine (the fit ran twice as fast pinned), and a fixed thread
    # count keeps the floating-point summation order, hence the probabilities, identical on
    # machines with different core counts. threadpoolctl comes with scikit-learn.
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(limits=1, user_api="blas"):
            pipeline.fit([text for _, text in canonical], [label for label, _ in canonical])
    except ValueError as exc:
        # e.g. "empty vocabulary" when every text is blank or no n-gram reaches min_df.
        raise ValueError(f"cannot train on this training set: {exc}") from exc
    labels = tuple(str(label) for label in pipeline.classes_)
    return TextClassifier(
        pipeline=pipeline,
        labels=labels,
        fingerprint=_fingerprint(canonical, seed, resolved),
        seed=seed,
        params=resolved,
        n_examples=len(canonical),
    )


def evaluate(
    classifier: TextClassifier, examples: Sequence[Example], *, unknown_labels: str = "refuse"
) -> dict[str, float | int]:
    """Accuracy, log loss, Brier score and expected calibration error on `examples`.

    brier is the multi-class Brier score: the mean over examples of the squared distance
    between the probability vector and the one-hot truth (0 is perfect, 2 is worst).
    ece uses 10 equal-width bins of the top label's probability, weighted by bin size.

    An example whose label the classifier was never trained on is refused, or with
    `unknown_labels="wrong"` scored as a wrong answer that gave the truth probability 0, so
    that two models trained on different labels can be compared on the same items.
    """
    if not examples:
        raise ValueError("cannot evaluate on an empty set of examples")
    if unknown_labels not in ("refuse", "wrong"):
        raise ValueError("unknown_labels must be 'refuse' or 'wrong'")
    unknown = sorted({e.label for e in examples} - set(classifier.labels))
    if unknown and unknown_labels == "refuse":
        raise ValueError(f"labels the classifier was not trained on: {unknown}")
    # Unknown truths get columns of probability 0: never predicted, always wrong.
    labels = (*classifier.labels, *unknown)
    index = {label: i for i, label in enumerate(labels)}
    rows = classifier.predict_proba_many([e.text for e in examples])
    proba = np.array([[row.get(label, 0.0) for label in labels] for row in rows], dtype=float)
    truth = np.array([index[e.label] for e in examples])
    n = len(examples)

    predicted = proba.argmax(axis=1)
    correct = predicted == truth
    confidence = proba.max(axis=1)
    # Clipping keeps one confidently wrong example from making the loss infinite.
    p_true = np.clip(proba[np.arange(n), truth], 1e-15, 1.0)
    one_hot = np.zeros_like(proba)
    one_hot[np.arange(n), truth] = 1.0

    bins = np.minimum((confidence * 10).astype(int), 9)
    ece = 0.0
    for b in range(10):
        in_bin = bins == b
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            ece += in_bin.sum() / n * gap
    return {
        "n": n,
        "accuracy": float(correct.mean()),
        "log_loss": float(-np.log(p_true).mean()),
        "brier": float(((proba - one_hot) ** 2).sum(axis=1).mean()),
        "ece": float(ece),
    }


def split(
    examples: Sequence[Example], *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """A deterministic stratified (train, test) split; both keep the input order.

    Each label sends round(n * test_fraction) of its examples to the test set, at least one
    and never all of them; a label with a single example stays in training.
    """
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be between 0 and 1")
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        by_label[example.label].append(i)
    rng = random.Random(seed)
    test_indices: set[int] = set()
    # Labels in sorted order so the shuffles draw from the generator in a fixed order.
    for label in sorted(by_label):
        indices = by_label[label]
        if len(indices) < 2:
            continue
        n_test = min(max(round(len(indices) * test_fraction), 1), len(indices) - 1)
        shuffled = list(indices)
        rng.shuffle(shuffled)
        test_indices.update(shuffled[:n_test])
    train = [e for i, e in enumerate(examples) if i not in test_indices]
    test = [e for i, e in enumerate(examples) if i in test_indices]
    return train, test
