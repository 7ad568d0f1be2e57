"""``rlmem/MemoryConstruction-v0``: build a memory from a stream of text chunks (Mem-α), as text.

The text version of the memory-construction task, for LLM writers (TRL) and scripted
writers (:mod:`rlmem.agents.heuristic_writers`). The whole task -- memory, tools, episodes,
answerer, reward terms -- lives in :mod:`rlmem.envs.memalpha`; this module is the Gymnasium
shell around it.
"""

from __future__ import annotations

import string
import textwrap
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from rlmem.envs.memalpha.answerer import Answerer, make_answerer, score_answer
from rlmem.envs.memalpha.data import (
    COMPETENCIES,
    SPLITS,
    Episode,
    GeneratorConfig,
    check_competencies,
    generate_episode,
    load_episodes,
)
from rlmem.envs.memalpha.reward import RewardTerms, chunk_scores, chunk_tokens, content_validity
from rlmem.envs.memalpha.store import CORE_MAX_TOKENS, MemoryStore
from rlmem.envs.memalpha.tools import MAX_CALLS_PER_ACTION, TOOL_CALL_CLOSE, TOOL_CALL_OPEN, run_action
from rlmem.envs.tmaze import rng_from_array, rng_state_to_array
from rlmem.errors import ConfigError

__all__ = ["CHARSET", "MemoryConstructionEnv", "WRITER_INSTRUCTIONS"]

CHARSET = (
    string.printable
    + "".join(chr(c) for c in range(0xA0, 0x250))  # Latin-1 supplement and Latin extended A/B
    + "\u2013\u2014\u2018\u2019\u201c\u201d\u2026\u2022\u20ac\u2122"  # dashes, quotes, ellipsis, bullet, euro, tm
)
"""Characters of observations and actions: printable ASCII (whitespace included), Latin
letters with diacritics, typographic dashes and quotes. Other characters in a chunk (a
user dataset in another script) appear as ``?`` in observations."""
_CHARSET_SET = frozenset(CHARSET)
_TRUNCATED = "\n[... cut to fit the observation ...]\n"
_REWARD_TIMINGS = ("end", "per_step")

WRITER_INSTRUCTIONS = f"""You are building a memory from a text that arrives in chunks. After the last chunk,
questions about the text are answered from your memory alone, so store what will be asked
and keep the memory small: the reward is answer accuracy + 0.05 * compression + the
fraction of your tool calls that succeed + 0.1 * the validity of what you store.

Memory:
- core_memory: one short paragraph (at most {CORE_MAX_TOKENS} tokens): summaries, running totals, rules
  (e.g. "label 1: meaning; label 2: meaning").
- semantic_memory: items of facts and knowledge ("The keeper of the red gate is Anna.").
- episodic_memory: items of events, each with its time ("On day 3, the caravan visited Brin.").
Only the 20 most recent items of each list are shown; each has an id in brackets.

Tools (call any number, in order, each as one block):
{TOOL_CALL_OPEN}{{"name": "new_memory_insert", "arguments": {{"memory_type": "semantic", "content": "..."}}}}{TOOL_CALL_CLOSE}
{TOOL_CALL_OPEN}{{"name": "memory_update", "arguments": {{"memory_type": "semantic", "new_content": "...", "memory_id": "k3f9"}}}}{TOOL_CALL_CLOSE}
{TOOL_CALL_OPEN}{{"name": "memory_update", "arguments": {{"memory_type": "core", "new_content": "..."}}}}{TOOL_CALL_CLOSE}
{TOOL_CALL_OPEN}{{"name": "memory_delete", "arguments": {{"memory_type": "episodic", "memory_id": "k3f9"}}}}{TOOL_CALL_CLOSE}
{TOOL_CALL_OPEN}{{"name": "search_memory", "arguments": {{"memory_type": "semantic", "query": "keeper red gate"}}}}{TOOL_CALL_CLOSE}
When a fact changes, update or delete the old item: stale items are not ignored."""
"""Static instructions for LLM writers (a system prompt); ``include_instructions=True`` puts
them at the top of every observation instead."""


class MemoryConstructionEnv(gym.Env[str, str]):
    """Read chunks one by one, edit a memory with tool calls, be asked questions at the end.

    ## Description

    After Wang et al., "Mem-α: Learning Memory Construction via Reinforcement Learning"
    (2025, arXiv 2509.25911). An episode (:class:`rlmem.envs.memalpha.data.Episode`) is a
    list of text chunks and questions. At every step the writer sees its memory and the
    next chunk and answers with text holding tool calls that edit the memory: a core
    paragraph (<= 512 tokens) and semantic and episodic item lists
    (:mod:`rlmem.envs.memalpha.store`, :mod:`rlmem.envs.memalpha.tools`). After the last
    chunk a fixed answerer (:mod:`rlmem.envs.memalpha.answerer`; BM25 + extraction rules by
    default, no model) answers the questions from the memory alone. Episodes are synthetic
    (four competencies: accurate retrieval, test-time learning, long-range understanding,
    conflict resolution; train and held-out vocabularies are disjoint) or read from a JSONL
    file (``dataset=``).

    ## Action Space

    ``Text(action_max_length, min_length=0, charset=CHARSET)``: the writer's reply. Every
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block in it is executed in
    order (at most ``max_calls``); other text is ignored. Any string is accepted, even one
    outside the declared space (longer, other characters): a malformed block, an unknown
    tool, a bad argument or id becomes a failed call with a reason in ``info``, never an
    exception. The empty string makes no call.

    ## Observation Space

    ``Text(obs_max_length, charset=CHARSET)``::

        [WRITER_INSTRUCTIONS, if include_instructions]
        <memory>
        <core_memory> ... </core_memory>
        <semantic_memory> (the most recent k of n items)  [id] content ... </semantic_memory>
        <episodic_memory> ... </episodic_memory>
        </memory>
        [<last_tool_results> one line per call of the previous action </last_tool_results>]
        <new_chunk index="3/6">
        ...the chunk...
        </new_chunk>

    The last observation (after the final chunk) ends with ``<episode_end/>`` instead of a
    chunk. Text beyond ``obs_max_length`` characters is cut (previous tool results first,
    then memory, then the chunk) with a visible marker.

    ## Rewards

    ``accuracy + beta * (1 - memory_tokens / chunk_tokens) + tool_success + gamma * validity``
    (beta = 0.05, gamma = 0.1 as in the reference; terms in
    :mod:`rlmem.envs.memalpha.reward`). ``tool_success`` and ``validity`` are per-chunk
    scores averaged over the chunks; accuracy and compression exist only at the end.

    - ``reward_timing="end"`` (default, as the reference): every step pays 0 and the last
      step pays the whole sum.
    - ``reward_timing="per_step"``: step t pays ``(tool_success_t + gamma * validity_t) / T``
      as it happens, the last step adds ``accuracy + beta * compression``. Same return.

    ## Starting State

    Empty memory (ids seeded per episode); the first chunk. ``reset(seed)`` draws a
    competency uniformly from ``competencies`` and generates an episode (or picks one from
    the dataset). ``options={"episode": Episode | dict}`` plays a given episode;
    ``options={"episode_index": i}`` picks dataset episode i.

    ## Episode End

    Terminated after the step that consumes the last chunk (``len(chunks)`` steps); never
    truncated. The final info holds ``accuracy``, ``correct`` (per question), ``scores``,
    ``predictions``, ``answers``, ``questions``, ``competency``, ``memory_tokens``,
    ``chunk_tokens``, ``compression``, ``tool_success_rate``, ``validity``,
    ``reward_terms`` and ``success`` (accuracy == 1). Every step's info holds
    ``chunk_index``, ``tool_results`` (one dict per call: name, arguments, ok, status,
    reason, result, validity), ``chunk_tool_success`` and ``chunk_validity``.

    ## Arguments

    ``split`` ("train" | "heldout"), ``competencies`` (a subset of the four names),
    ``sizes`` (dict of :class:`rlmem.envs.memalpha.data.GeneratorConfig` fields:
    n_chunks, n_questions, ...), ``dataset`` (JSONL path; replaces the generator), ``beta``
    (0.05), ``gamma`` (0.1), ``answerer`` (None/"bm25" or an
    :class:`rlmem.envs.memalpha.answerer.Answerer`), ``reward_timing`` ("end" | "per_step"),
    ``core_max_tokens`` (512), ``max_items`` (200 per list), ``max_item_tokens`` (1024),
    ``max_calls`` (64 per action), ``show_tool_results`` (True), ``include_instructions``
    (False), ``obs_max_length`` / ``action_max_length`` (32768 characters), ``render_mode``
    (None | "ansi" | "rgb_array"). Bad values raise :class:`rlmem.errors.ConfigError`.

    ``get_state()`` / ``set_state()`` save and restore everything (episode, memory, step,
    RNG) as JSON-safe builtins.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1, "memory_types": ("capacity", "rewriting")}

    def __init__(
        self,
        split: str = "train",
        competencies: Any = COMPETENCIES,
        sizes: dict[str, Any] | None = None,
        dataset: str | None = None,
        beta: float = 0.05,
        gamma: float = 0.1,
        answerer: Answerer | str | None = None,
        reward_timing: str = "end",
        core_max_tokens: int = CORE_MAX_TOKENS,
        max_items: int = 200,
        max_item_tokens: int = 1024,
        max_calls: int = MAX_CALLS_PER_ACTION,
        show_tool_results: bool = True,
        include_instructions: bool = False,
        obs_max_length: int = 32768,
        action_max_length: int = 32768,
        render_mode: str | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ConfigError(f"MemoryConstruction: split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.competencies = check_competencies(competencies)
        self.generator_config = GeneratorConfig.from_mapping(sizes)
        self.dataset = load_episodes(dataset) if dataset is not None else None
        for name, value in (("beta", beta), ("gamma", gamma)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value) or value < 0:
                raise ConfigError(f"MemoryConstruction: {name} must be a finite number >= 0, got {value!r}")
        self.beta, self.gamma = float(beta), float(gamma)
        self.answerer = make_answerer(answerer)
        if reward_timing not in _REWARD_TIMINGS:
            raise ConfigError(
                f"MemoryConstruction: reward_timing must be one of {_REWARD_TIMINGS}, got {reward_timing!r}"
            )
        self.reward_timing = reward_timing
        self.store_kwargs = {
            "core_max_tokens": core_max_tokens, "max_items": max_items, "max_item_tokens": max_item_tokens
        }
        MemoryStore(**self.store_kwargs)  # validate the caps now, not at the first reset
        for name, value, low in (("max_calls", max_calls, 1), ("obs_max_length", obs_max_length, 256),
                                 ("action_max_length", action_max_length, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"MemoryConstruction: {name} must be an integer >= {low}, got {value!r}")
        self.max_calls = max_calls
        self.show_tool_results = bool(show_tool_results)
        self.include_instructions = bool(include_instructions)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"MemoryConstruction: render_mode must be None, 'ansi' or 'rgb_array', got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.observation_space = spaces.Text(max_length=obs_max_length, min_length=1, charset=CHARSET)
        self.action_space = spaces.Text(max_length=action_max_length, min_length=0, charset=CHARSET)

        # Episode state (meaningful after reset).
        self.episode: Episode | None = None
        self.store = MemoryStore(**self.store_kwargs)
        self._t = 0
        self._chunk_success: list[float] = []
        self._chunk_validity: list[float] = []
        self._last_results: list[dict[str, Any]] = []
        self._final: dict[str, Any] | None = None
        self._needs_reset = True

    # -- episode flow ------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        unknown = sorted(set(options) - {"episode", "episode_index"})
        if unknown:
            raise ConfigError(f"MemoryConstruction.reset: unknown option(s) {unknown}; options: episode, episode_index")
        if "episode" in options:
            ep = options["episode"]
            self.episode = ep if isinstance(ep, Episode) else Episode.from_dict(ep)
        elif self.dataset is not None:
            index = options.get("episode_index")
            if index is None:
                index = int(self.np_random.integers(len(self.dataset)))
            if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.dataset):
                raise ConfigError(
                    f"MemoryConstruction.reset: episode_index must be in [0, {len(self.dataset)}), got {index!r}"
                )
            self.episode = self.dataset[int(index)]
        else:
            if "episode_index" in options:
                raise ConfigError("MemoryConstruction.reset: episode_index needs a dataset")
            competency = self.competencies[int(self.np_random.integers(len(self.competencies)))]
            self.episode = generate_episode(competency, self.np_random, self.split, self.generator_config)
        # The id sequence is seeded from the env RNG: same seed, same ids.
        self.store = MemoryStore(**self.store_kwargs, id_seed=int(self.np_random.integers(2**31)))
        self._t = 0
        self._chunk_success, self._chunk_validity, self._last_results = [], [], []
        self._final = None
        self._needs_reset = False
        info = {"competency": self.episode.competency, "n_chunks": len(self.episode.chunks), "chunk_index": 0}
        return self._observe(), info

    def step(self, action: str):
        if self._needs_reset:
            raise ResetNeeded("MemoryConstruction: call reset() before step()")
        ep = self.episode
        text = action.decode("utf-8", "replace") if isinstance(action, bytes) else action
        results = run_action(self.store, text, self.max_calls)  # a non-str action is one failed call
        for r in results:
            judged = content_validity(r)
            r["validity"] = None if judged is None else judged[0]
        success, validity = chunk_scores(results)
        self._chunk_success.append(success)
        self._chunk_validity.append(validity)
        self._last_results = results
        info: dict[str, Any] = {
            "chunk_index": self._t,
            "tool_results": results,
            "chunk_tool_success": success,
            "chunk_validity": validity,
        }
        n = len(ep.chunks)
        reward = (success + self.gamma * validity) / n if self.reward_timing == "per_step" else 0.0
        self._t += 1
        terminated = self._t == n
        if terminated:
            self._needs_reset = True
            terms = self._finish()
            if self.reward_timing == "per_step":
                reward += terms.accuracy + self.beta * terms.compression
            else:
                reward = terms.total
            info.update(self._final)
        return self._observe(), float(reward), terminated, False, info

    def _finish(self) -> RewardTerms:
        ep = self.episode
        predictions = self.answerer.answer_all(self.store, list(ep.questions))
        scores = [score_answer(p, a, ep.metric) for p, a in zip(predictions, ep.answers)]
        memory_tokens, text_tokens = self.store.total_tokens(), chunk_tokens(ep.chunks)
        terms = RewardTerms(
            accuracy=float(np.mean(scores)),
            compression=RewardTerms.compression_of(memory_tokens, text_tokens),
            tool_success=float(np.mean(self._chunk_success)),
            validity=float(np.mean(self._chunk_validity)),
            beta=self.beta,
            gamma=self.gamma,
        )
        self._final = {
            "accuracy": terms.accuracy,
            "correct": [s == 1.0 for s in scores],
            "scores": scores,
            "predictions": predictions,
            "answers": [list(a) for a in ep.answers],
            "questions": list(ep.questions),
            "competency": ep.competency,
            "memory_tokens": memory_tokens,
            "chunk_tokens": text_tokens,
            "compression": terms.compression,
            "tool_success_rate": terms.tool_success,
            "validity": terms.validity,
            "reward_terms": terms.as_dict(),
            "success": terms.accuracy == 1.0,
        }
        return terms

    # -- observation -------------------------------------------------------------------------

    def _observe(self) -> str:
        ep = self.episode
        if ep is None:
            return "<episode_end/>"
        head = WRITER_INSTRUCTIONS + "\n\n" if self.include_instructions else ""
        memory = f"<memory>\n{self.store.render()}\n</memory>\n"
        results = ""
        if self.show_tool_results and self._t > 0:
            lines = [_describe(k, r) for k, r in enumerate(self._last_results, start=1)] or ["(no tool calls)"]
            results = "<last_tool_results>\n" + "\n".join(lines) + "\n</last_tool_results>\n"
        if self._t < len(ep.chunks):
            tail = f'<new_chunk index="{self._t + 1}/{len(ep.chunks)}">\n{ep.chunks[self._t]}\n</new_chunk>'
        else:
            tail = "<episode_end/>"
        text = _fit(head, memory, results, tail, self.observation_space.max_length)
        return "".join(c if c in _CHARSET_SET else "?" for c in text)

    # -- picture -----------------------------------------------------------------------------

    def render(self):
        """``"ansi"``: the current observation text. ``"rgb_array"``: ``uint8[540, 960, 3]``,
        memory on the left, the chunk (or the answers at the end) on the right."""
        if self.render_mode is None:
            gym.logger.warn("MemoryConstruction.render() called without render_mode; pass 'ansi' or 'rgb_array'.")
            return None
        if self.render_mode == "ansi":
            return self._observe()
        return self._picture()

    def _picture(self) -> np.ndarray:
        from PIL import Image, ImageDraw, ImageFont

        width, height, pad, line_h = 960, 540, 8, 12
        img = Image.new("RGB", (width, height), (24, 24, 28))
        draw = ImageDraw.Draw(img)
        font = ImageFont.load_default()
        ep = self.episode

        def column(x: int, title: str, body: str, cols: int) -> None:
            draw.text((x, pad), title, fill=(245, 190, 40), font=font)
            y = pad + 2 * line_h
            for para in body.splitlines() or [""]:
                for line in textwrap.wrap(para, cols) or [""]:
                    if y > height - 2 * line_h:
                        draw.text((x, y), "...", fill=(160, 160, 160), font=font)
                        return
                    draw.text((x, y), line, fill=(230, 230, 230), font=font)
                    y += line_h

        column(pad, f"MEMORY  ({self.store.total_tokens()} tokens)", self.store.render(), 76)
        if ep is not None and self._final is None and self._t < len(ep.chunks):
            column(width // 2 + pad, f"CHUNK {self._t + 1}/{len(ep.chunks)}  [{ep.competency}]", ep.chunks[self._t], 76)
        elif self._final is not None:
            f = self._final
            lines = [f"accuracy {f['accuracy']:.2f}  reward {f['reward_terms']['total']:.3f}"]
            for q, p, a, ok in zip(f["questions"], f["predictions"], f["answers"], f["correct"]):
                lines.append(f"{'OK ' if ok else 'XX '}{q} -> {p!r} (gold {a[0]!r})")
            column(width // 2 + pad, f"ANSWERS  [{ep.competency}]", "\n".join(lines), 76)
        draw.line([(width // 2, 0), (width // 2, height)], fill=(64, 64, 70))
        return np.asarray(img, dtype=np.uint8)

    # -- state -------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as JSON-safe builtins."""
        return {
            "episode": self.episode.to_dict() if self.episode is not None else None,
            "t": self._t,
            "store": self.store.to_dict(),
            "chunk_success": list(self._chunk_success),
            "chunk_validity": list(self._chunk_validity),
            "last_results": self._last_results,
            "final": self._final,
            "needs_reset": self._needs_reset,
            "rng": [int(v) for v in rng_state_to_array(self.np_random)],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict (RNG included)."""
        keys = {
            "episode", "t", "store", "chunk_success", "chunk_validity", "last_results", "final", "needs_reset", "rng"
        }
        if not isinstance(state, dict) or set(state) != keys:
            raise ConfigError(f"MemoryConstruction.set_state: expected keys {sorted(keys)}")
        self.episode = Episode.from_dict(state["episode"]) if state["episode"] is not None else None
        self._t = int(state["t"])
        self.store = MemoryStore.from_dict(state["store"])
        self._chunk_success = [float(v) for v in state["chunk_success"]]
        self._chunk_validity = [float(v) for v in state["chunk_validity"]]
        self._last_results = list(state["last_results"])
        self._final = state["final"]
        self._needs_reset = bool(state["needs_reset"])
        self._np_random = rng_from_array(np.array(state["rng"], dtype=np.uint64))


def _describe(k: int, r: dict[str, Any]) -> str:
    """One line about a call's outcome for the next observation (at most ~300 characters)."""
    name = r.get("name") or "?"
    if r["ok"]:
        res = r.get("result") or {}
        if "id" in res:
            text = f"{k}. {name}: ok (id {res['id']})"
        elif "results" in res:
            hits = " | ".join(f"[{h['id']}] {h['content']}" for h in res["results"][:5])
            text = f"{k}. {name}: ok, {len(res['results'])} hit(s): {hits}"
        elif res.get("truncated"):
            text = f"{k}. {name}: ok (truncated to the core cap)"
        else:
            text = f"{k}. {name}: ok"
    else:
        text = f"{k}. {name}: {r['status']}: {r['reason']}"
    return text if len(text) <= 300 else text[:297] + "..."


def _fit(head: str, memory: str, results: str, tail: str, limit: int) -> str:
    """Join the observation parts, cutting (results, then memory, then chunk) to ``limit``."""
    parts = [head, memory, results, tail]
    over = sum(map(len, parts)) - limit
    for i in (2, 1, 3, 0):
        if over <= 0:
            break
        if len(parts[i]) <= len(_TRUNCATED):  # too short to carry the marker: drop it
            over -= len(parts[i])
            parts[i] = ""
            continue
        keep = max(0, len(parts[i]) - over - len(_TRUNCATED))
        over -= len(parts[i]) - (keep + len(_TRUNCATED))
        parts[i] = parts[i][:keep] + _TRUNCATED
    text = "".join(parts)
    return text[:limit] if len(text) > limit else text
