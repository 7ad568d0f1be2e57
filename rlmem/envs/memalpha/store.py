"""The memory a Mem-α writer edits: a core paragraph and two lists of items.

After Wang et al., "Mem-α: Learning Memory Construction via Reinforcement Learning"
(arXiv 2509.25911; code ``wangyu-ustc/Mem-alpha``, ``memory.py``):

- ``core``: one string, at most ``core_max_tokens`` (512) tokens. A longer update is cut
  at a token boundary and ends with :data:`TRUNCATION_MARKER` (the marker is counted
  inside the cap), so the writer can see that it lost text.
- ``semantic`` and ``episodic``: lists of ``{"id": str, "content": str}`` in insertion
  order (an update keeps the item's place). Ids are 4 characters of ``[a-z0-9]``, derived
  from ``(id_seed, counter)`` by a hash: deterministic per episode, unique among the items
  held, and restored exactly by :meth:`MemoryStore.from_dict`. Inserting content that is
  already in the list (after stripping surrounding whitespace) is skipped, as in the
  reference.

Plain data, no hidden state: :meth:`MemoryStore.to_dict` / :meth:`MemoryStore.from_dict`
round-trip through JSON (checkpoints, videos, replays). Sizes are counted with
:func:`rlmem.envs.memalpha.text.count_tokens`.

Operations that cannot be done (unknown id, full list, empty content, oversized item)
raise :class:`MemoryOpError`; the tool layer (:mod:`rlmem.envs.memalpha.tools`) turns
each into a failed, recorded tool call.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rlmem.envs.memalpha.text import BM25, count_tokens, split_sentences, terms, token_spans
from rlmem.errors import ConfigError, RlmemError

__all__ = [
    "CORE_MAX_TOKENS",
    "LIST_TYPES",
    "MEMORY_TYPES",
    "RENDER_RECENT",
    "SEARCH_TOP_K",
    "TRUNCATION_MARKER",
    "MemoryOpError",
    "MemoryStore",
    "normalize_memory_type",
]

MEMORY_TYPES = ("core", "semantic", "episodic")
LIST_TYPES = ("semantic", "episodic")
CORE_MAX_TOKENS = 512
"""The reference's cap on the core paragraph."""
RENDER_RECENT = 20
"""Items per list shown in a prompt (the reference's ``MAX_MEMORY_ITEMS``): the most recent."""
SEARCH_TOP_K = 20
"""Results returned by a search (the reference's ``TOPK``)."""
TRUNCATION_MARKER = " [truncated: over the core token cap]"
"""Appended to a core update that was cut to fit the cap."""
ID_LENGTH = 4
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class MemoryOpError(RlmemError):
    """A memory operation that cannot be done; the message is the reason shown to the writer."""


def normalize_memory_type(value: Any, allowed: tuple[str, ...] = MEMORY_TYPES) -> str:
    """``"semantic"``, ``"Semantic"`` and ``"semantic_memory"`` (the reference's tool enum)
    all mean ``"semantic"``; anything else, or a type not in ``allowed``, raises
    :class:`MemoryOpError`."""
    if not isinstance(value, str):
        raise MemoryOpError(f"memory_type must be a string, got {type(value).__name__}")
    name = value.strip().lower()
    if name.endswith("_memory"):
        name = name[: -len("_memory")]
    if name not in MEMORY_TYPES:
        raise MemoryOpError(f"unknown memory_type {value!r}; expected one of {', '.join(allowed)}")
    if name not in allowed:
        raise MemoryOpError(f"memory_type {name!r} is not allowed here; expected one of {', '.join(allowed)}")
    return name


class MemoryStore:
    """Core paragraph + semantic and episodic item lists (see the module docstring).

    Args:
        core_max_tokens: cap of the core paragraph, truncation marker included (512).
        max_items: most items per list; inserting into a full list fails (the writer must
            delete or update). 200 by default, far above what a good writer needs.
        max_item_tokens: most tokens per semantic/episodic item; a longer insert or update
            fails (the reference has no cap; one keeps a single call from flooding memory).
        id_seed: seed of the id sequence (the env passes one per episode).
    """

    def __init__(
        self,
        core_max_tokens: int = CORE_MAX_TOKENS,
        max_items: int = 200,
        max_item_tokens: int = 1024,
        id_seed: int = 0,
    ) -> None:
        for name, value, low in (
            ("core_max_tokens", core_max_tokens, count_tokens(TRUNCATION_MARKER) + 1),
            ("max_items", max_items, 1),
            ("max_item_tokens", max_item_tokens, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"MemoryStore: {name} must be an integer >= {low}, got {value!r}")
        if not isinstance(id_seed, int) or isinstance(id_seed, bool):
            raise ConfigError(f"MemoryStore: id_seed must be an integer, got {id_seed!r}")
        self.core_max_tokens = core_max_tokens
        self.max_items = max_items
        self.max_item_tokens = max_item_tokens
        self.id_seed = id_seed
        self.id_counter = 0
        self.core = ""
        self.semantic: list[dict[str, str]] = []
        self.episodic: list[dict[str, str]] = []

    # -- ids ----------------------------------------------------------------------------

    def _new_id(self) -> str:
        taken = {item["id"] for item in self.semantic} | {item["id"] for item in self.episodic}
        while True:
            digest = hashlib.blake2b(f"{self.id_seed}:{self.id_counter}".encode(), digest_size=8).digest()
            self.id_counter += 1
            n = int.from_bytes(digest, "big")
            chars = []
            for _ in range(ID_LENGTH):
                n, r = divmod(n, len(_ID_ALPHABET))
                chars.append(_ID_ALPHABET[r])
            new = "".join(chars)
            if new not in taken:
                return new

    def _items(self, memory_type: str) -> list[dict[str, str]]:
        return self.semantic if memory_type == "semantic" else self.episodic

    def _index(self, memory_type: str, memory_id: Any) -> int:
        if memory_id is None:
            raise MemoryOpError(f"memory_id is required for {memory_type} memory")
        if not isinstance(memory_id, str):
            raise MemoryOpError(f"memory_id must be a string, got {type(memory_id).__name__}")
        for i, item in enumerate(self._items(memory_type)):
            if item["id"] == memory_id.strip():
                return i
        raise MemoryOpError(f"no {memory_type} memory with id {memory_id!r}")

    def _check_item_content(self, content: Any, memory_type: str) -> str:
        if not isinstance(content, str):
            raise MemoryOpError(f"content must be a string, got {type(content).__name__}")
        text = content.strip()
        if not text:
            raise MemoryOpError("content is empty")
        if memory_type != "core":
            n = count_tokens(text)
            if n > self.max_item_tokens:
                raise MemoryOpError(
                    f"content has {n} tokens; a {memory_type} item holds at most {self.max_item_tokens}"
                )
        return text

    # -- operations (the tools call these) -------------------------------------------------

    def insert(self, memory_type: str, content: str) -> str | None:
        """Append an item; returns its new id, or ``None`` when the same content is already
        in that list (skipped). Core memory cannot be inserted into (use :meth:`update`)."""
        memory_type = normalize_memory_type(memory_type)
        if memory_type == "core":
            raise MemoryOpError("core memory cannot be inserted into; use memory_update to rewrite it")
        text = self._check_item_content(content, memory_type)
        items = self._items(memory_type)
        if any(item["content"] == text for item in items):
            return None
        if len(items) >= self.max_items:
            raise MemoryOpError(
                f"{memory_type} memory is full ({self.max_items} items); delete or update an item first"
            )
        new_id = self._new_id()
        items.append({"id": new_id, "content": text})
        return new_id

    def update(self, memory_type: str, new_content: str, memory_id: str | None = None) -> bool:
        """Core: replace the paragraph (``memory_id`` ignored), truncating to the cap.
        Lists: replace the content of item ``memory_id`` in place (required).

        Returns ``True`` when the core update was truncated, ``False`` otherwise.
        """
        memory_type = normalize_memory_type(memory_type)
        text = self._check_item_content(new_content, memory_type)
        if memory_type == "core":
            self.core, truncated = self._fit_core(text)
            return truncated
        i = self._index(memory_type, memory_id)
        items = self._items(memory_type)
        items[i] = {"id": items[i]["id"], "content": text}
        return False

    def delete(self, memory_type: str, memory_id: str | None = None) -> None:
        """Core: clear the paragraph. Lists: remove item ``memory_id`` (required)."""
        memory_type = normalize_memory_type(memory_type)
        if memory_type == "core":
            self.core = ""
            return
        i = self._index(memory_type, memory_id)
        del self._items(memory_type)[i]

    def search(self, memory_type: str, query: str, top_k: int = SEARCH_TOP_K) -> list[dict[str, Any]]:
        """BM25 search of one list: up to ``top_k`` ``{"id", "content", "score"}`` with a
        positive score, best first (ties in list order). Core memory is not searchable
        (it is always in the prompt), as in the reference."""
        memory_type = normalize_memory_type(memory_type, LIST_TYPES)
        if not isinstance(query, str):
            raise MemoryOpError(f"query must be a string, got {type(query).__name__}")
        items = self._items(memory_type)
        index = BM25([terms(item["content"]) for item in items])
        ranked = index.ranking(terms(query))[:top_k]
        return [{"id": items[i]["id"], "content": items[i]["content"], "score": round(s, 4)} for i, s in ranked]

    def _fit_core(self, text: str) -> tuple[str, bool]:
        spans = token_spans(text)
        if len(spans) <= self.core_max_tokens:
            return text, False
        keep = self.core_max_tokens - count_tokens(TRUNCATION_MARKER)
        return text[: spans[keep - 1][1]] + TRUNCATION_MARKER, True

    # -- reading ---------------------------------------------------------------------------

    def get(self, memory_type: str, memory_id: str | None = None) -> str:
        """The core paragraph, or the content of item ``memory_id``."""
        memory_type = normalize_memory_type(memory_type)
        if memory_type == "core":
            return self.core
        return self._items(memory_type)[self._index(memory_type, memory_id)]["content"]

    def total_tokens(self) -> int:
        """Tokens held: core + every semantic and episodic item (ids and markup excluded)."""
        return count_tokens(self.core) + sum(count_tokens(i["content"]) for i in self.semantic + self.episodic)

    def documents(self) -> list[tuple[str, str | None, str]]:
        """Retrieval units ``(memory_type, id, text)``: the core paragraph split into
        sentences (id ``None``), then semantic items, then episodic items, in list order."""
        docs: list[tuple[str, str | None, str]] = [("core", None, s) for s in split_sentences(self.core)]
        docs += [("semantic", i["id"], i["content"]) for i in self.semantic]
        docs += [("episodic", i["id"], i["content"]) for i in self.episodic]
        return docs

    def render(self, recent: int = RENDER_RECENT) -> str:
        """The memory as the writer sees it: the whole core paragraph and the ``recent``
        most recent items of each list (``[id] content`` per line), e.g.::

            <core_memory>
            Empty.
            </core_memory>
            <semantic_memory> (the most recent 1 of 1 items)
            [k3f9] The passcode of the blue locker is 4821.
            </semantic_memory>
            <episodic_memory> (the most recent 0 of 0 items)
            Empty.
            </episodic_memory>
        """
        parts = [f"<core_memory>\n{self.core or 'Empty.'}\n</core_memory>"]
        for memory_type in LIST_TYPES:
            items = self._items(memory_type)
            shown = items[-recent:] if recent > 0 else []
            body = "\n".join(f"[{i['id']}] {i['content']}" for i in shown) or "Empty."
            parts.append(
                f"<{memory_type}_memory> (the most recent {len(shown)} of {len(items)} items)\n"
                f"{body}\n</{memory_type}_memory>"
            )
        return "\n".join(parts)

    # -- plain data ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything, as JSON-safe builtins (ints, strings, lists, dicts)."""
        return {
            "core_max_tokens": self.core_max_tokens,
            "max_items": self.max_items,
            "max_item_tokens": self.max_item_tokens,
            "id_seed": self.id_seed,
            "id_counter": self.id_counter,
            "core": self.core,
            "semantic": [dict(i) for i in self.semantic],
            "episodic": [dict(i) for i in self.episodic],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryStore:
        """Inverse of :meth:`to_dict`; a malformed dict raises :class:`rlmem.errors.ConfigError`."""
        keys = (
            "core_max_tokens", "max_items", "max_item_tokens", "id_seed", "id_counter", "core", "semantic", "episodic"
        )
        if not isinstance(data, dict) or set(data) != set(keys):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"MemoryStore.from_dict: expected keys {list(keys)}, got {got}")
        store = cls(data["core_max_tokens"], data["max_items"], data["max_item_tokens"], data["id_seed"])
        if not isinstance(data["id_counter"], int) or not isinstance(data["core"], str):
            raise ConfigError("MemoryStore.from_dict: id_counter must be an int and core a string")
        store.id_counter, store.core = data["id_counter"], data["core"]
        for memory_type in LIST_TYPES:
            items = data[memory_type]
            ok = isinstance(items, list) and all(
                isinstance(i, dict) and set(i) == {"id", "content"} and isinstance(i["id"], str)
                and isinstance(i["content"], str) for i in items
            )
            if not ok:
                raise ConfigError(f"MemoryStore.from_dict: {memory_type} must be a list of {{id, content}} strings")
            store._items(memory_type).extend(dict(i) for i in items)
        return store

    def copy(self) -> MemoryStore:
        return MemoryStore.from_dict(self.to_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MemoryStore) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"MemoryStore(core={count_tokens(self.core)} tokens, semantic={len(self.semantic)}, "
            f"episodic={len(self.episodic)}, total={self.total_tokens()} tokens)"
        )
