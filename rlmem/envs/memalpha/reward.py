"""Mem-α reward terms: tool-call success, content validity, and their sum with accuracy
and compression.

``R = accuracy + beta * (1 - memory_tokens / chunk_tokens) + tool_success + gamma * validity``
(beta = 0.05, gamma = 0.1 as in the reference's default run). How the reference computes each
term (``memalpha/llm_agent/generation.py``, ``verl/workers/reward_manager/naive.py``,
``memory_server.py``) and what we do:

- **accuracy** -- mean question score of the episode (our metrics: :mod:`.answerer`).
- **compression** -- ``1 - memory_tokens / chunk_tokens`` over the whole episode, not clipped
  (a memory larger than the text it read scores below 0, as in the reference).
- **tool success** -- per chunk, the fraction of that chunk's calls that executed
  successfully; a skipped duplicate insert is not a success and a chunk with no call
  scores 0 (both as in the reference). The reference adds each chunk's own rate to that
  chunk's training sample; an episode-level env reports the mean over chunks.
- **content validity** -- the reference asks Qwen3-32B whether the content of each
  ``new_memory_insert`` / ``memory_update`` call suits its memory type (prompts in
  ``memory_server.py``) and scores the chunk by the mean of the 0/1 verdicts (0 if the
  chunk has none). Without a judge model we apply its criteria as rules
  (:func:`content_validity`):

  * every type: content must be non-empty, must not be a placeholder ("Here we save the
    summary", "TBD", "...") and must not talk about the memory itself (the literal words
    "core memory", "semantic memory", "episodic memory") -- the reference's two core rules,
    applied to every type;
  * semantic: at least three words with at least one content word (a fact, not a stub);
  * episodic: at least three words and a clear time reference (``day 3``, ``Monday``,
    ``March``, ``2024``, ``10:30``, ``yesterday``, ``at timestamp t``...), the
    reference's "clear temporal information";
  * core: nothing more (the reference judges core only by the two rules).

  One deliberate difference: the reference also puts ``memory_delete`` and
  ``search_memory`` calls into the chunk's mean with a score of 0 (its analyser does not
  support them), which punishes deleting stale facts -- exactly what conflict resolution
  needs. We leave them out of the mean; they still count for tool success. Calls that could
  not be decoded never reach either analyser and count only as failed calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rlmem.envs.memalpha.store import MemoryOpError, normalize_memory_type
from rlmem.envs.memalpha.text import count_tokens, terms

__all__ = ["RewardTerms", "chunk_scores", "chunk_tokens", "content_validity"]

_JUDGED_TOOLS = {"new_memory_insert": "content", "memory_update": "new_content"}

_META = re.compile(r"\b(core|semantic|episodic)\s+memor(y|ies)\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(
    r"\b(placeholder|tbd|todo|lorem ipsum|to be (filled|added|determined|decided))\b"
    r"|\bhere (we|i) (save|store|keep|record|put|write)\b"
    r"|^[^:]{0,40}:\s*(\.\.\.|\u2026)?\s*$"  # "Summary:" / "Rules: ..." with nothing after
    r"|^\W*$",
    re.IGNORECASE,
)
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_WEEKDAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_TEMPORAL = re.compile(
    rf"\b(?:{_MONTHS}|{_WEEKDAYS})\b"
    r"|\b(?:day|week|month|year|hour|minute|step|round|session|turn)\s+\d+\b"
    r"|\b(?:today|yesterday|tomorrow|tonight|morning|afternoon|evening|night|noon|midnight|dawn|dusk)\b"
    r"|\b(?:last|next|this)\s+(?:week|month|year|time)\b|\b\d+\s+(?:days?|weeks?|months?|years?|hours?)\s+ago\b"
    r"|\btimestamp\b|\b\d{1,2}:\d{2}\b|\b\d{1,2}\s?(?:am|pm)\b|\b(?:1[5-9]|20)\d{2}\b|\b\d{4}-\d{2}-\d{2}\b",
    re.IGNORECASE,
)


def content_validity(result: dict[str, Any]) -> tuple[float, str] | None:
    """Validity ``(score in {0, 1}, reason)`` of one tool call's content, judged on its
    arguments whether or not the call succeeded (as the reference does); ``None`` for calls
    that are not judged (other tools, undecodable blocks). ``result`` is a dict from
    :func:`rlmem.envs.memalpha.tools.execute_call`."""
    field = _JUDGED_TOOLS.get(result.get("name"))
    args = result.get("arguments")
    if field is None or not isinstance(args, dict):
        return None
    try:
        memory_type = normalize_memory_type(args.get("memory_type"))
    except MemoryOpError:
        return 0.0, "no valid memory_type"
    content = args.get(field)
    if not isinstance(content, str) or not content.strip():
        return 0.0, "empty content"
    if _META.search(content):
        return 0.0, "talks about the memory instead of storing information"
    if _PLACEHOLDER.search(content.strip()):
        return 0.0, "placeholder content"
    n_words = len(re.findall(r"\w+", content))
    if memory_type == "semantic" and (n_words < 3 or not terms(content)):
        return 0.0, "too short to hold a fact"
    if memory_type == "episodic":
        if n_words < 3:
            return 0.0, "too short to describe an event"
        if not _TEMPORAL.search(content):
            return 0.0, "an episodic memory needs a time reference"
    return 1.0, "valid"


def chunk_scores(results: list[dict[str, Any]]) -> tuple[float, float]:
    """``(tool_success, validity)`` of one chunk's calls: the fraction of calls with
    ``ok`` (0 without calls) and the mean validity of the judged calls (0 without any)."""
    success = sum(bool(r.get("ok")) for r in results) / len(results) if results else 0.0
    judged = [v[0] for v in map(content_validity, results) if v is not None]
    return success, (sum(judged) / len(judged) if judged else 0.0)


@dataclass(frozen=True)
class RewardTerms:
    """The four terms of an episode and their weights; :attr:`total` is the reward."""

    accuracy: float
    """Mean question score in [0, 1]."""
    compression: float
    """``1 - memory_tokens / chunk_tokens`` (not clipped: below 0 when memory outgrows the text)."""
    tool_success: float
    """Mean over chunks of each chunk's call success rate, in [0, 1]."""
    validity: float
    """Mean over chunks of each chunk's content validity, in [0, 1]."""
    beta: float = 0.05
    gamma: float = 0.1

    @staticmethod
    def compression_of(memory_tokens: int, chunk_tokens: int) -> float:
        return 1.0 - memory_tokens / chunk_tokens if chunk_tokens > 0 else 0.0

    @property
    def total(self) -> float:
        return self.accuracy + self.beta * self.compression + self.tool_success + self.gamma * self.validity

    def as_dict(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "compression": self.compression,
            "tool_success_rate": self.tool_success,
            "validity": self.validity,
            "beta": self.beta,
            "gamma": self.gamma,
            "total": self.total,
        }


def chunk_tokens(chunks: list[str] | tuple[str, ...]) -> int:
    """Tokens of all chunks of an episode (the denominator of the compression term)."""
    return sum(count_tokens(c) for c in chunks)
