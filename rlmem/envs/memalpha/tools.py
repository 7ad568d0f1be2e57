"""The memory tools, their call format in the writer's text, and a parser that never raises.

Tools (names and arguments as in the reference, ``wangyu-ustc/Mem-alpha`` ``functions.py``)
-------------------------------------------------------------------------------------------
=====================  ==========================================  ===========================================
tool                   arguments                                   effect
=====================  ==========================================  ===========================================
``new_memory_insert``  ``memory_type`` (semantic | episodic),      append an item; exact duplicates are
                       ``content``                                 *skipped* (status ``"skipped"``, not a
                                                                   success, as in the reference)
``memory_update``      ``memory_type`` (core | semantic |          core: replace the paragraph (cut to 512
                       episodic), ``new_content``,                 tokens with a marker); lists: replace item
                       ``memory_id`` (lists only, required there)  ``memory_id`` in place
``memory_delete``      ``memory_type``, ``memory_id`` (lists only) core: clear; lists: remove the item
``search_memory``      ``memory_type`` (semantic | episodic),      BM25 top-20 ``{id, content, score}``;
                       ``query``, ``search_method`` ("bm25")       ``"text-embedding"`` fails: no model here
=====================  ==========================================  ===========================================

``memory_type`` also accepts the reference's enum spelling (``"semantic_memory"``...).

The call format (one format, Qwen's)
------------------------------------
A call is a JSON object ``{"name": ..., "arguments": {...}}`` between ``<tool_call>`` and
``</tool_call>``; an action may hold several, executed in order; text outside the blocks
(reasoning, ``<think>``...) is ignored::

    I will store the new fact.
    <tool_call>{"name": "new_memory_insert", "arguments": {"memory_type": "semantic", "content": "The passcode of the blue locker is 4821."}}</tool_call>
    <tool_call>{"name": "memory_delete", "arguments": {"memory_type": "semantic", "memory_id": "k3f9"}}</tool_call>

``arguments`` may also be a JSON *string* holding that object (the OpenAI wire format).
:func:`tool_call` writes a block; :data:`TOOL_SCHEMAS` describes the tools as OpenAI
function schemas (for chat templates and TRL).

Failures
--------
Malformed JSON, an unterminated block, an unknown tool, a missing or unexpected argument, a
non-string argument, a bad ``memory_type``, an unknown id, empty or oversized content, a full
list, a search method without a model, more than ``max_calls`` calls: each becomes one
failed call with a ``reason``. Nothing here raises on any input text.

Result of every call (``dict``, JSON-safe): ``name`` (str or None), ``arguments`` (dict or
None), ``ok`` (bool), ``status`` ("ok" | "skipped" | "error"), ``reason`` (str, "" when
ok), ``result`` (the new id, ``{"truncated": bool}``, the search hits, or None).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rlmem.envs.memalpha.store import LIST_TYPES, MemoryOpError, MemoryStore, normalize_memory_type

__all__ = [
    "MAX_CALLS_PER_ACTION",
    "SEARCH_METHODS",
    "TOOLS",
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "TOOL_SCHEMAS",
    "ParsedCall",
    "ToolSpec",
    "execute_call",
    "parse_tool_calls",
    "run_action",
    "tool_call",
]

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
MAX_CALLS_PER_ACTION = 64
"""Calls beyond this many in one action are recorded as failed and not executed."""
SEARCH_METHODS = ("bm25", "text-embedding")


@dataclass(frozen=True)
class ToolSpec:
    required: tuple[str, ...]
    optional: tuple[str, ...]
    memory_types: tuple[str, ...]
    description: str


TOOLS: dict[str, ToolSpec] = {
    "new_memory_insert": ToolSpec(
        ("memory_type", "content"), (), LIST_TYPES,
        "Append a new item to semantic or episodic memory (core memory cannot be inserted into). "
        "Content already present in that memory is skipped.",
    ),
    "memory_update": ToolSpec(
        ("memory_type", "new_content"), ("memory_id",), ("core", "semantic", "episodic"),
        "Core memory: replace the whole paragraph (at most 512 tokens). Semantic/episodic: replace "
        "the content of the item memory_id.",
    ),
    "memory_delete": ToolSpec(
        ("memory_type",), ("memory_id",), ("core", "semantic", "episodic"),
        "Core memory: clear the paragraph. Semantic/episodic: delete the item memory_id.",
    ),
    "search_memory": ToolSpec(
        ("memory_type", "query"), ("search_method",), LIST_TYPES,
        "BM25 search of semantic or episodic memory; returns the 20 best items with their ids.",
    ),
}

_ARG_DESCRIPTIONS = {
    "memory_type": "Which memory: 'core', 'semantic' or 'episodic'.",
    "content": "The text of the new item.",
    "new_content": "The replacement text.",
    "memory_id": "Id of the item (required for semantic/episodic, ignored for core).",
    "query": "Search words.",
    "search_method": "'bm25' (the only method available without an embedding model).",
}

TOOL_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": spec.description,
            "parameters": {
                "type": "object",
                "properties": {
                    arg: {
                        "type": "string",
                        "description": _ARG_DESCRIPTIONS[arg],
                        **({"enum": list(spec.memory_types)} if arg == "memory_type" else {}),
                        **({"enum": list(SEARCH_METHODS)} if arg == "search_method" else {}),
                    }
                    for arg in spec.required + spec.optional
                },
                "required": list(spec.required),
            },
        },
    }
    for name, spec in TOOLS.items()
]
"""OpenAI-style function schemas of the four tools."""


def tool_call(name: str, **arguments: Any) -> str:
    """One call block in the documented format: ``tool_call("memory_delete", memory_type="core")``."""
    return f"{TOOL_CALL_OPEN}{json.dumps({'name': name, 'arguments': arguments})}{TOOL_CALL_CLOSE}"


@dataclass(frozen=True)
class ParsedCall:
    """One ``<tool_call>`` block: the decoded call, or the reason it could not be decoded."""

    name: str | None
    arguments: dict[str, Any] | None
    error: str | None
    raw: str


def parse_tool_calls(text: str) -> list[ParsedCall]:
    """Every ``<tool_call>...</tool_call>`` block of ``text``, in order (never raises).

    A block whose body is not a JSON object with a string ``name`` and an object
    ``arguments`` (or a JSON string of one) yields a :class:`ParsedCall` with ``error`` set.
    An opening tag without a closing tag yields one error and ends the scan.
    """
    if not isinstance(text, str):
        return [ParsedCall(None, None, f"action must be a string, got {type(text).__name__}", "")]
    calls: list[ParsedCall] = []
    pos = 0
    while True:
        start = text.find(TOOL_CALL_OPEN, pos)
        if start < 0:
            return calls
        body_start = start + len(TOOL_CALL_OPEN)
        end = text.find(TOOL_CALL_CLOSE, body_start)
        if end < 0:
            calls.append(ParsedCall(None, None, f"unterminated {TOOL_CALL_OPEN} block (no {TOOL_CALL_CLOSE})",
                                    text[body_start:body_start + 200]))
            return calls
        calls.append(_decode(text[body_start:end]))
        pos = end + len(TOOL_CALL_CLOSE)


def _decode(body: str) -> ParsedCall:
    raw = body[:2000]  # what the info dict keeps of a bad block
    try:
        obj = json.loads(body, strict=False)  # strict=False: raw newlines inside strings are common
    except (json.JSONDecodeError, RecursionError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        return ParsedCall(None, None, f"malformed JSON in tool call: {msg}", raw)
    if not isinstance(obj, dict):
        return ParsedCall(None, None, f"a tool call must be a JSON object, got {type(obj).__name__}", raw)
    extra = sorted(set(obj) - {"name", "arguments"})
    name = obj.get("name")
    if not isinstance(name, str):
        return ParsedCall(None, None, "a tool call needs a string 'name'", raw)
    if extra:
        return ParsedCall(name, None, f"unexpected keys {extra} in tool call (expected 'name', 'arguments')", raw)
    arguments = obj.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments, strict=False)
        except (json.JSONDecodeError, RecursionError):
            return ParsedCall(name, None, "'arguments' is a string that is not valid JSON", raw)
    if not isinstance(arguments, dict):
        return ParsedCall(name, None, f"'arguments' must be a JSON object, got {type(arguments).__name__}", raw)
    return ParsedCall(name, arguments, None, raw)


def _failure(name: str | None, arguments: dict | None, reason: str, status: str = "error") -> dict[str, Any]:
    return {"name": name, "arguments": arguments, "ok": False, "status": status, "reason": reason, "result": None}


def execute_call(store: MemoryStore, call: ParsedCall) -> dict[str, Any]:
    """Run one parsed call on ``store`` (mutating it) and return its result dict (never raises
    for bad calls; see the module docstring for the keys)."""
    if call.error is not None:
        return _failure(call.name, call.arguments, call.error)
    name, args = call.name, call.arguments
    spec = TOOLS.get(name)
    if spec is None:
        return _failure(name, args, f"unknown tool {name!r}; tools: {', '.join(TOOLS)}")
    missing = [a for a in spec.required if a not in args]
    if missing:
        return _failure(name, args, f"{name}: missing argument(s) {missing}")
    unexpected = sorted(set(args) - set(spec.required) - set(spec.optional))
    if unexpected:
        return _failure(name, args, f"{name}: unexpected argument(s) {unexpected}; "
                                    f"arguments: {list(spec.required + spec.optional)}")
    for key, value in args.items():
        if not (isinstance(value, str) or (value is None and key in spec.optional)):
            return _failure(name, args, f"{name}: argument {key!r} must be a string, got {type(value).__name__}")
    try:
        memory_type = normalize_memory_type(args["memory_type"], spec.memory_types)
        if name == "new_memory_insert":
            new_id = store.insert(memory_type, args["content"])
            if new_id is None:
                return _failure(name, args, "the same content is already in memory: insertion skipped", "skipped")
            result: Any = {"id": new_id}
        elif name == "memory_update":
            truncated = store.update(memory_type, args["new_content"], args.get("memory_id"))
            result = {"truncated": truncated}
        elif name == "memory_delete":
            store.delete(memory_type, args.get("memory_id"))
            result = None
        else:  # search_memory
            method = args.get("search_method") or "bm25"
            if method == "text-embedding":
                return _failure(name, args, "search_method 'text-embedding' is not available without an "
                                            "embedding model; use 'bm25'")
            if method != "bm25":
                return _failure(name, args, f"unknown search_method {method!r}; use 'bm25'")
            result = {"results": store.search(memory_type, args["query"])}
    except MemoryOpError as e:
        return _failure(name, args, f"{name}: {e}")
    return {"name": name, "arguments": args, "ok": True, "status": "ok", "reason": "", "result": result}


def run_action(store: MemoryStore, text: str, max_calls: int = MAX_CALLS_PER_ACTION) -> list[dict[str, Any]]:
    """Parse ``text`` and execute its calls in order on ``store``; one result per block.

    Blocks after the first ``max_calls`` are recorded as failed and not executed.
    """
    results = []
    for k, call in enumerate(parse_tool_calls(text)):
        if k >= max_calls:
            results.append(_failure(call.name, call.arguments, f"more than {max_calls} tool calls in one action"))
        else:
            results.append(execute_call(store, call))
    return results
