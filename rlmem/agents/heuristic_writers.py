"""Scripted memory writers for ``rlmem/MemoryConstruction-v0``: the baselines of the Mem-α task.

A writer maps the env's observation text to an action text of tool calls, and keeps
whatever per-episode state it needs; call ``reset()`` at the start of every episode::

    writer = make_writer("heuristic")
    obs, info = env.reset(seed=0)
    writer.reset()
    while True:
        obs, reward, terminated, truncated, info = env.step(writer(obs))
        if terminated or truncated:
            break

- :class:`StoreNothing` -- makes no call: the floor (accuracy 0, only the compression term).
- :class:`StoreEverything` -- inserts every chunk verbatim into episodic memory: good at
  retrieval, pays the whole compression term, cannot total or resolve conflicts.
- :class:`HeuristicWriter` -- regular expressions for the synthetic generator's main
  wordings: facts go to semantic memory (one item per key, updated in place when the value
  changes); labelled examples, delivery totals and visited towns are kept as running
  aggregates in the core paragraph. It is a real baseline, not an oracle: it believes
  false claims and rival deliveries written in the same words, and it does not know the
  second wording of deliveries and stops ("3 more crates of salt arrived with the
  caravan", "the caravan camped outside Hale").
"""

from __future__ import annotations

import re
from typing import Callable

from rlmem.envs.memalpha.tools import tool_call
from rlmem.errors import UnknownNameError

__all__ = ["WRITERS", "HeuristicWriter", "StoreEverything", "StoreNothing", "make_writer", "parse_observation"]

_CHUNK = re.compile(r'<new_chunk index="[^"]*">\n(?P<chunk>.*)\n</new_chunk>\s*$', re.DOTALL)
_SECTION = {
    t: re.compile(rf"<{t}_memory>[^\n]*\n(?P<body>.*?)\n</{t}_memory>", re.DOTALL) for t in ("semantic", "episodic")
}
_ITEM = re.compile(r"^\[(?P<id>[a-z0-9]{4})\] (?P<content>.*)$", re.MULTILINE)


def parse_observation(obs: str) -> tuple[str | None, dict[str, list[tuple[str, str]]]]:
    """``(chunk text or None at the episode end, {"semantic": [(id, content)], "episodic": [...]})``
    of an observation of :class:`rlmem.envs.memalpha.env.MemoryConstructionEnv`."""
    m = _CHUNK.search(obs)
    items = {}
    for memory_type, pattern in _SECTION.items():
        section = pattern.search(obs)
        items[memory_type] = [(i["id"], i["content"]) for i in _ITEM.finditer(section["body"])] if section else []
    return (m["chunk"] if m else None), items


class StoreNothing:
    """Never calls a tool."""

    def reset(self) -> None:
        pass

    def __call__(self, obs: str) -> str:
        return ""


class StoreEverything:
    """Inserts each chunk verbatim as one episodic item."""

    def reset(self) -> None:
        pass

    def __call__(self, obs: str) -> str:
        chunk, _ = parse_observation(obs)
        if chunk is None:
            return ""
        return tool_call("new_memory_insert", memory_type="episodic", content=chunk)


# The generator's main wordings (rlmem.envs.memalpha.data). Deliberately unanchored: the
# writer cannot tell a fact from a false claim made in the same words.
_FACT = re.compile(r"\bthe (?P<attr>\w+) of the (?P<entity>\w+ \w+) is (?:now )?(?P<value>[\w-]+)", re.IGNORECASE)
_EXAMPLE = re.compile(r"Example: (?P<words>[^\n]+?) => label (?P<label>\w+)\.")
_DELIVERY = re.compile(r"\bcaravan delivered (?P<n>\d+) crates of (?P<good>\w+)")
_VISIT = re.compile(r"\bthe caravan visited (?P<town>\w+)")


class HeuristicWriter:
    """Pattern-matching writer (see the module docstring for what it can and cannot do).

    State per episode: the fact keys it has stored with their item ids (learned from the
    memory shown in the next observation, and remembered once the item scrolls out of the
    20 shown), the words seen per label, the delivery totals and the towns visited.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.facts: dict[tuple[str, str], str] = {}  # key -> value stored
        self.ids: dict[tuple[str, str], str] = {}  # key -> id of its semantic item
        self.label_words: dict[str, list[str]] = {}
        self.totals: dict[str, int] = {}
        self.towns: list[str] = []
        self.core = ""

    @staticmethod
    def _sentence(key: tuple[str, str], value: str) -> str:
        return f"The {key[0]} of the {key[1]} is {value}."

    def _learn_ids(self, items: dict[str, list[tuple[str, str]]]) -> None:
        for memory_id, content in items["semantic"]:
            m = _FACT.fullmatch(content.rstrip("."))
            if m:
                key = (m["attr"].lower(), m["entity"].lower())
                if self.facts.get(key) == m["value"]:
                    self.ids[key] = memory_id

    def __call__(self, obs: str) -> str:
        chunk, items = parse_observation(obs)
        self._learn_ids(items)
        if chunk is None:
            return ""
        calls = []
        # Facts: the last statement of a key in this chunk wins.
        latest: dict[tuple[str, str], str] = {}
        for m in _FACT.finditer(chunk):
            latest[(m["attr"].lower(), m["entity"].lower())] = m["value"]
        for key, value in latest.items():
            if self.facts.get(key) == value:
                continue
            self.facts[key] = value
            if key in self.ids:
                calls.append(tool_call("memory_update", memory_type="semantic",
                                       new_content=self._sentence(key, value), memory_id=self.ids[key]))
            else:
                calls.append(tool_call("new_memory_insert", memory_type="semantic", content=self._sentence(key, value)))
        # Aggregates kept in the core paragraph.
        for m in _EXAMPLE.finditer(chunk):
            seen = self.label_words.setdefault(m["label"], [])
            seen.extend(w for w in m["words"].split() if w not in seen)
        for m in _DELIVERY.finditer(chunk):
            self.totals[m["good"]] = self.totals.get(m["good"], 0) + int(m["n"])
        for m in _VISIT.finditer(chunk):
            if m["town"] not in self.towns:
                self.towns.append(m["town"])
        core = " ".join(
            [f"Label {k}: {' '.join(w)}." for k, w in sorted(self.label_words.items())]
            + [f"Total crates of {g} delivered: {n}." for g, n in sorted(self.totals.items())]
            + ([f"Towns the caravan visited: {', '.join(self.towns)}."] if self.towns else [])
        )
        if core != self.core:
            self.core = core
            calls.append(tool_call("memory_update", memory_type="core", new_content=core))
        return "\n".join(calls)


WRITERS: dict[str, Callable[[], object]] = {
    "store_nothing": StoreNothing,
    "store_everything": StoreEverything,
    "heuristic": HeuristicWriter,
}


def make_writer(name: str):
    """A fresh writer by name: ``"store_nothing"``, ``"store_everything"``, ``"heuristic"``."""
    if name not in WRITERS:
        raise UnknownNameError(f"unknown writer {name!r}; writers: {', '.join(WRITERS)}")
    return WRITERS[name]()


# Plain functions (observation text -> action text) for the stateless writers.
def store_nothing(obs: str) -> str:
    """:class:`StoreNothing` as a function."""
    return ""


def store_everything(obs: str) -> str:
    """:class:`StoreEverything` as a function."""
    return StoreEverything()(obs)
