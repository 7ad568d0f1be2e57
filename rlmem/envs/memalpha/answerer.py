"""The fixed answerer that reads a finished memory, and the answer metrics.

Interface: ``Answerer.answer(store, question) -> str``. The answerer sees the memory alone
(never the chunks), as in Mem-α, where a frozen Qwen3-32B answers from the memory the
writer built. Three implementations:

- :class:`BM25Answerer` (default, ``"bm25"``): CPU only, no model. Designed together with
  the synthetic generator (:mod:`.data`), see below.
- :class:`HFAnswerer`: any local ``transformers`` causal LM (greedy decoding).
- :class:`OpenAIAnswerer`: an OpenAI-compatible ``/chat/completions`` endpoint (a vLLM
  server, for instance), through ``urllib``; nothing is sent before the first question.

The two LLM answerers put the core paragraph and the BM25 top-``top_k`` items of each list
into the prompt (:func:`memory_context`), as the reference's answer server does.

How :class:`BM25Answerer` answers
---------------------------------
1. Retrieval units: core sentences, semantic items, episodic items (in that order, each
   list in insertion order). BM25 ranks them against the question's terms; the ``top_k``
   (15) best with a positive score are read, best first.
2. Inside a unit, sentences are read in order of the summed IDF of the question terms they
   contain; the first sentence from which the question's *extraction rule* gets an answer wins:

   =====================================  ======================================================
   question form                          extraction rule in a sentence
   =====================================  ======================================================
   mentions ``label``                     the word after ``label`` (``"... => label 2."``,
                                          ``"Label 2: reef tide ..."``)
   ``How many`` / ``How much ...``        the last number
   ``What is/was the <key>?``             the text after ``<key> is``, ``<key> is now``,
                                          ``<key> was`` or ``<key>:`` up to ``. ; ! ?``
   ``Which ...`` / ``List ...``           the text after the last ``:``, else the last word
   anything else                          the sentence itself (use metric ``contains``)
   =====================================  ======================================================
3. Nothing extracted, or an empty memory: ``""`` (never a guess).

Equal scores keep memory order: **the earlier unit wins; recency is never preferred.**
That is deliberate. A writer that appends "the keeper is now Vera" beside the stale "the
keeper is Anna" leaves two equally good answers in memory; preferring the newer one would
reward exactly the lazy append that conflict resolution is meant to punish, and a real
reader cannot tell which item is newer anyway (ids are random, and a memory rewritten by
``memory_update`` keeps old positions). To answer conflict-resolution questions the writer
must update or delete the stale item.

The consequences the generator relies on: a memory holding the episode's
``reference_memory`` answers every question; a memory that stores every chunk verbatim
does well on accurate retrieval (the fact sentence is found inside its chunk), fails
totals and town lists (a single delivery sentence is not a total) and is often misled by
stale values and false claims; an empty memory scores 0.
"""

from __future__ import annotations

import abc
import json
import re
import string
from collections.abc import Sequence
from typing import Any

from rlmem.envs.memalpha.store import LIST_TYPES, MemoryStore
from rlmem.envs.memalpha.text import BM25, split_sentences, terms
from rlmem.errors import ConfigError, RunError, UnknownNameError

__all__ = [
    "ANSWER_SYSTEM_PROMPT",
    "Answerer",
    "BM25Answerer",
    "HFAnswerer",
    "OpenAIAnswerer",
    "make_answerer",
    "memory_context",
    "normalize_answer",
    "score_answer",
]


# --------------------------------------------------------------------------- metrics

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower case, punctuation -> space, articles dropped,
    whitespace collapsed. ``"The  Blue-Locker."`` -> ``"blue locker"``."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def _items(text: str) -> frozenset[str]:
    return frozenset(n for n in (normalize_answer(p) for p in re.split(r"[,;\n]|\band\b", text)) if n)


def score_answer(prediction: str, acceptable: Sequence[str], metric: str) -> float:
    """1.0 if ``prediction`` matches any acceptable answer under ``metric``, else 0.0.

    - ``"exact"``: equal after :func:`normalize_answer`;
    - ``"contains"``: the normalised answer occurs in the normalised prediction (word-aligned);
    - ``"set"``: the same set of items, items split at ``,`` ``;`` newlines and ``and``
      (order and repetition ignored; a single item is a one-element set).
    """
    if isinstance(acceptable, str):
        acceptable = (acceptable,)
    pred = normalize_answer(prediction)
    if metric == "exact":
        return float(any(pred == normalize_answer(a) for a in acceptable))
    if metric == "contains":
        padded = f" {pred} "
        return float(any(normalize_answer(a) and f" {normalize_answer(a)} " in padded for a in acceptable))
    if metric == "set":
        got = _items(prediction)
        return float(bool(got) and any(got == _items(a) for a in acceptable))
    raise ConfigError(f"unknown metric {metric!r}; metrics: exact, contains, set")


# --------------------------------------------------------------------------- interface


class Answerer(abc.ABC):
    """Answers questions from a :class:`MemoryStore` alone."""

    @abc.abstractmethod
    def answer(self, store: MemoryStore, question: str) -> str:
        """The answer text (``""`` when the memory holds none)."""

    def answer_all(self, store: MemoryStore, questions: Sequence[str]) -> list[str]:
        """One answer per question (subclasses may batch)."""
        return [self.answer(store, q) for q in questions]


# --------------------------------------------------------------------------- BM25 answerer

_LABEL_Q = re.compile(r"\blabel\b", re.IGNORECASE)
_COUNT_Q = re.compile(r"^\s*how\s+(many|much)\b", re.IGNORECASE)
_KEY_Q = re.compile(r"^\s*what\s+(?:is|was|are|were)\s+(?P<key>.+?)[\s?.!]*$", re.IGNORECASE)
_LIST_Q = re.compile(r"^\s*(which|list|name)\b", re.IGNORECASE)
_LABEL = re.compile(r"\blabel\s*[:=]?\s*(?P<v>[\w-]+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ARTICLE_WORDS = {"the", "a", "an"}


def _key_pattern(key: str) -> re.Pattern[str]:
    """``"the passcode of the blue locker"`` -> a regex for ``passcode of (the) blue locker
    is (now) VALUE`` or ``...: VALUE`` (articles optional, any spacing, any case)."""
    words = re.findall(r"[\w'-]+", key)
    while words and words[0].lower() in _ARTICLE_WORDS:
        words = words[1:]
    pattern = ""
    for i, w in enumerate(words):
        last = i == len(words) - 1
        if w.lower() in _ARTICLE_WORDS and not last:
            pattern += rf"(?:{w}\s+)?"
        else:
            pattern += re.escape(w) + ("" if last else r"\s+")
    verb = r"(?:\s*[:=]\s*|\s+(?:is|was|are|were)\s+(?:now\s+|still\s+)?)"
    return re.compile(rf"\b{pattern}{verb}(?P<v>[^.;!?\n]+)", re.IGNORECASE)


def _extractor(question: str):
    """The extraction rule of ``question``'s form: ``sentence -> answer or None``."""
    if _LABEL_Q.search(question):
        return lambda s: (m := _LABEL.search(s)) and m.group("v")
    if _COUNT_Q.search(question):
        return lambda s: (nums := _NUMBER.findall(s)) and nums[-1]
    key = _KEY_Q.match(question)
    if key:
        pattern = _key_pattern(key.group("key"))
        return lambda s: (m := pattern.search(s)) and m.group("v").strip().strip("\"'") or None
    if _LIST_Q.search(question):
        def listed(s: str) -> str | None:
            if ":" in s:
                return s.rsplit(":", 1)[1].strip().rstrip(".!?;").strip() or None
            words = re.findall(r"[\w'-]+", s)
            return words[-1] if words else None

        return listed
    return lambda s: s


class BM25Answerer(Answerer):
    """The default, model-free answerer (see the module docstring for the rules).

    Args:
        top_k: retrieval units read, best first (the reference's BM25 fallback keeps 15).
    """

    def __init__(self, top_k: int = 15) -> None:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ConfigError(f"BM25Answerer: top_k must be a positive integer, got {top_k!r}")
        self.top_k = top_k

    def answer(self, store: MemoryStore, question: str) -> str:
        docs = [text for _, _, text in store.documents()]
        index = BM25([terms(t) for t in docs])
        query = terms(question)
        extract = _extractor(question)
        query_set = set(query)
        for i, _ in index.ranking(query)[: self.top_k]:
            sentences = split_sentences(docs[i])
            weights = [sum(index.idf(t) for t in query_set & set(terms(s))) for s in sentences]
            order = sorted((k for k in range(len(sentences)) if weights[k] > 0), key=lambda k: -weights[k])
            for k in order:  # stable sort: equal weights keep sentence order
                value = extract(sentences[k])
                if value:
                    return value
        return ""

    def __repr__(self) -> str:
        return f"BM25Answerer(top_k={self.top_k})"


# --------------------------------------------------------------------------- LLM answerers

ANSWER_SYSTEM_PROMPT = (
    "You answer questions using only the memory below. Reply with the answer alone, as briefly "
    "as possible: a word, a number, or a comma-separated list."
)


def memory_context(store: MemoryStore, question: str, top_k: int = 20) -> str:
    """The memory as an LLM answerer sees it: the whole core paragraph and, per list, the
    BM25 top-``top_k`` items for ``question`` (best first), like the reference's server."""
    parts = [f"<core_memory>\n{store.core or 'Empty.'}\n</core_memory>"]
    for memory_type in LIST_TYPES:
        hits = store.search(memory_type, question, top_k=top_k)
        body = "\n".join(f"[{h['id']}] {h['content']}" for h in hits) or "Empty."
        parts.append(f"<{memory_type}_memory>\n{body}\n</{memory_type}_memory>")
    return "\n".join(parts)


def _clean(text: str) -> str:
    """Drop a Qwen-style ``<think>...</think>`` block and surrounding whitespace."""
    if "</think>" in text:
        text = text.split("</think>", 1)[1]
    elif "<think>" in text:
        return ""  # unfinished reasoning: no answer (the reference scores it "Empty")
    return text.strip()


class HFAnswerer(Answerer):
    """A local ``transformers`` causal LM answers from :func:`memory_context` (greedy).

    Args:
        model: a ``PreTrainedModel`` with ``generate`` (already on its device).
        tokenizer: its tokenizer; its chat template is used when it has one, otherwise a
            plain ``system / Question: / Answer:`` prompt.
        max_new_tokens: answer length limit.
        top_k: items per list in the prompt.
    """

    def __init__(self, model: Any, tokenizer: Any, max_new_tokens: int = 32, top_k: int = 20) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.top_k = int(max_new_tokens), int(top_k)

    def prompt(self, store: MemoryStore, question: str) -> str:
        system = f"{ANSWER_SYSTEM_PROMPT}\n\n{memory_context(store, question, self.top_k)}"
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{system}\n\nQuestion: {question}\nAnswer:"

    def answer(self, store: MemoryStore, question: str) -> str:
        import torch  # lazy: the default answerer needs no torch

        enc = self.tokenizer(self.prompt(store, question), return_tensors="pt")
        device = getattr(self.model, "device", None)
        if device is not None:
            enc = {k: v.to(device) for k, v in enc.items()}
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        new_tokens = out[0, enc["input_ids"].shape[1]:]
        return _clean(self.tokenizer.decode(new_tokens, skip_special_tokens=True))


class OpenAIAnswerer(Answerer):
    """An OpenAI-compatible chat endpoint answers from :func:`memory_context`.

    Args:
        base_url: e.g. ``"http://localhost:8000/v1"`` (a ``vllm serve`` server); requests go
            to ``base_url + "/chat/completions"``.
        model: the served model name.
        api_key: sent as a bearer token when given (vLLM accepts any).
        max_tokens, temperature, timeout: request settings (greedy by default).
        top_k: items per list in the prompt.

    A failed request raises :class:`rlmem.errors.RunError` with the reason.
    """

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, max_tokens: int = 64,
        temperature: float = 0.0, timeout: float = 60.0, top_k: int = 20,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"OpenAIAnswerer: base_url must start with http:// or https://, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.max_tokens, self.temperature = int(max_tokens), float(temperature)
        self.timeout, self.top_k = timeout, top_k

    def request_body(self, store: MemoryStore, question: str) -> dict[str, Any]:
        system = f"{ANSWER_SYSTEM_PROMPT}\n\n{memory_context(store, question, self.top_k)}"
        return {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def answer(self, store: MemoryStore, question: str) -> str:
        import urllib.error
        import urllib.request

        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(self.request_body(store, question)).encode()
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read().decode())
            content = reply["choices"][0]["message"]["content"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
            raise RunError(f"OpenAIAnswerer: request to {self.url} failed: {e}") from None
        return _clean(content or "")


def make_answerer(spec: Any = None) -> Answerer:
    """``None`` or ``"bm25"`` -> :class:`BM25Answerer`; an :class:`Answerer` is returned as is."""
    if spec is None or spec == "bm25":
        return BM25Answerer()
    if isinstance(spec, Answerer):
        return spec
    raise UnknownNameError(f"unknown answerer {spec!r}; pass 'bm25' or an Answerer instance "
                           "(HFAnswerer, OpenAIAnswerer)")
