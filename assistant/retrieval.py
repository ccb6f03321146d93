"""BM25 over document passages (bm25s): which passages to show the model for a question."""

from __future__ import annotations

import numpy as np


class PassageIndex:
    def __init__(self, texts: list[str]):
        import bm25s

        self._bm25s = bm25s
        self.size = len(texts)
        self._retriever = bm25s.BM25()
        tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
        self._retriever.index(tokens, show_progress=False)

    def rank(self, query: str) -> list[int]:
        """All passage indices, best match first; ties (and no match) keep document order."""
        if self.size == 0:
            return []
        tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
        scores = np.zeros(self.size)
        if tokens.ids and tokens.ids[0]:
            scores = np.asarray(self._retriever.get_scores(_query_words(tokens)), dtype=np.float64)
        return [int(i) for i in np.lexsort((np.arange(self.size), -scores))]


def _query_words(tokens) -> list[str]:
    inverse = {v: k for k, v in tokens.vocab.items()}
    return [inverse[i] for i in tokens.ids[0]]
