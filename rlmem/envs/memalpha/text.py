"""Text primitives shared by the memory store, the tools and the answerer.

- :func:`count_tokens` -- THE token count of the Mem-α environment (memory size, chunk size,
  the core cap, item caps, the compression term). One function, used everywhere.
- :func:`terms` -- the bag of search terms of a text (BM25 documents and queries).
- :class:`BM25` -- Okapi BM25 over a list of term lists.
- :func:`split_sentences` -- sentence units (core memory and answer extraction).

No model and no download: everything here is a few regular expressions.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["BM25", "STOPWORDS", "count_tokens", "split_sentences", "stem", "terms", "token_spans"]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Number of tokens of ``text``: maximal runs of word characters, plus every other
    non-space character on its own (``"Day 3, 4821."`` -> ``Day``, ``3``, ``,``, ``4821``,
    ``.`` = 5).

    A deterministic, model-free stand-in for a subword tokenizer (the reference counts
    with tiktoken): for plain English it is within ~20% of a BPE count, and it never
    changes between machines or library versions, so rewards are reproducible.
    """
    return len(_TOKEN.findall(text))


def token_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the tokens :func:`count_tokens` counts."""
    return [m.span() for m in _TOKEN.finditer(text)]


STOPWORDS = frozenset(
    """a an the and or but if of at by for with about to from in on into onto over under
    is are was were be been being am do does did has have had it its this that these those
    there here what which who whom whose when where why how all any each some no not than
    then so such very can could will would shall should may might must i you he she we they
    me him her us them my your his our their as up out off also just only own same too""".split()
)
"""Words ignored by search (BM25 terms): they carry no evidence about which item answers."""

_WORD = re.compile(r"[a-z0-9]+")


def stem(word: str) -> str:
    """A tiny suffix stripper so that ``visit``/``visited``/``visits`` meet in search.

    Strips ``ing``, ``ed``, ``es`` (after ss/x/z/ch/sh), then a plural ``s`` (not ``ss``),
    keeping at least three characters. Deliberately crude: it only has to make the
    answerer robust to the inflections of one language, not to be a linguist.
    """
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    if len(word) > 4 and (word.endswith(("sses", "xes", "zes", "ches", "shes"))):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """Search terms of ``text``: lower-cased alphanumeric words, stopwords removed, stemmed."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after ``.``, ``!`` or ``?`` followed by space, and at
    line breaks; empty pieces dropped. ``"Day 3. The gate is red.\\nLabel 2: x y"`` ->
    ``["Day 3.", "The gate is red.", "Label 2: x y"]``."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


class BM25:
    """Okapi BM25 over ``docs`` (each a list of terms, see :func:`terms`).

    ``score(q, d) = sum_{t in q} idf(t) * f(t, d) * (k1 + 1) / (f(t, d) + k1 * (1 - b + b * |d| / avgdl))``
    with ``idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))`` (the Lucene form: always
    positive, so a term present in every document still counts a little, unlike the
    classic form which can go negative on tiny corpora). ``k1 = 1.5``, ``b = 0.75`` as in
    ``rank_bm25``, which the reference uses. Repeated query terms count once per repetition.
    """

    def __init__(self, docs: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = float(k1), float(b)
        self.tf = [Counter(d) for d in docs]
        self.lengths = [len(d) for d in docs]
        self.n_docs = len(docs)
        self.avgdl = (sum(self.lengths) / self.n_docs) if self.n_docs else 0.0
        df: Counter[str] = Counter()
        for tf in self.tf:
            df.update(tf.keys())
        self.df = df

    def idf(self, term: str) -> float:
        n = self.df.get(term, 0)
        return math.log(1.0 + (self.n_docs - n + 0.5) / (n + 0.5))

    def scores(self, query: Sequence[str]) -> list[float]:
        """One score per document (``float``), in document order."""
        out = [0.0] * self.n_docs
        if not self.n_docs or self.avgdl == 0.0:
            return out
        for term in query:
            if term not in self.df:
                continue
            idf = self.idf(term)
            for i, tf in enumerate(self.tf):
                f = tf.get(term, 0)
                if f:
                    norm = self.k1 * (1.0 - self.b + self.b * self.lengths[i] / self.avgdl)
                    out[i] += idf * f * (self.k1 + 1.0) / (f + norm)
        return out

    def ranking(self, query: Sequence[str]) -> list[tuple[int, float]]:
        """``(doc index, score)`` for documents with a positive score, best first; equal
        scores keep document order (the earlier document first)."""
        scored = [(i, s) for i, s in enumerate(self.scores(query)) if s > 0.0]
        scored.sort(key=lambda p: -p[1])  # stable: ties stay in document order
        return scored
