"""Which past items are most like this one: TF-IDF cosine similarity over their texts.

Pure (scikit-learn, no Django): the services build one index per workflow step from its
reviewed items and keep it while no new decision arrives (`workflows.services.fewshot`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class SimilarityIndex:
    """Texts, vectorised once; `nearest` ranks them against a query."""

    def __init__(self, texts: Sequence[str]) -> None:
        # Imported here, as in classifier.py: scikit-learn costs a second to import.
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.size = len(texts)
        self._vectorizer: Any = None
        self._matrix: Any = None
        if not texts:
            return
        # Word 1-2-grams: examples should share what the item is about, not its spelling.
        vectorizer = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)
        try:
            self._matrix = vectorizer.fit_transform(list(texts))
        except ValueError:
            # Every text empty or stop words only: nothing is like anything.
            return
        self._vectorizer = vectorizer

    def nearest(self, text: str, k: int) -> list[tuple[int, float]]:
        """Up to k (position, cosine) pairs, most similar first; a tie goes to the later
        position (the newer item). Texts with nothing in common (cosine 0) are never given."""
        if self._vectorizer is None or k < 1:
            return []
        from sklearn.metrics.pairwise import linear_kernel

        # TF-IDF rows are L2-normalised, so the dot product is the cosine.
        scores = linear_kernel(self._vectorizer.transform([text]), self._matrix)[0]
        ranked = sorted(
            ((i, float(s)) for i, s in enumerate(scores) if s > 1e-12),
            key=lambda pair: (-pair[1], -pair[0]),
        )
        return ranked[:k]
