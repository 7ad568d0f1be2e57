"""LLM memory writers for ``rlmem/MemoryConstruction-v0`` (Mem-α): a tiny local model, or a real one.

A writer maps the env's observation text (memory + new chunk) to an action text of
``<tool_call>`` blocks, exactly like :mod:`rlmem.agents.heuristic_writers`; an
:class:`LLMWriter` does it by generating from a causal LM with a chat prompt::

    model, tokenizer = build_tiny(corpus_texts, TinyModelSpec())     # CPU, no download
    # or: model, tokenizer = load_pretrained("/models/Qwen3-4B")     # a local HF folder
    writer = LLMWriter(model, tokenizer, max_new_tokens=128)
    action = writer(observation)                 # one observation -> one action (greedy)
    actions = writer.generate([obs_a, obs_b])    # a batch, left-padded

The tiny model
--------------
:func:`build_tiny` trains a byte-level BPE tokenizer with the ``tokenizers`` library on the
given corpus (the synthetic episodes, tool calls and :data:`WRITER_INSTRUCTIONS`), wraps it
as a ``PreTrainedTokenizerFast`` with a ChatML-style chat template (``<|im_start|>role\\n
...<|im_end|>``; ``<|im_end|>`` is the end of a turn and the EOS), and builds a randomly
initialised ``Qwen2ForCausalLM`` of a few layers from a config. Two choices make it work on
held-out episodes, whose names (places, people, towns, goods, label words) never occur in
training:

- **Open-class words are spelled, not memorised.** Words passed as ``hidden_words`` (the
  names of the training split's vocabulary) are removed from the corpus before the BPE
  merges are learned, and digits are always split one by one, so a name is a few
  sub-word pieces whether the model saw it in training or not. A writer that learned to
  *copy* the pieces of training names copies held-out names the same way; a word-level
  vocabulary would map every held-out name to ``<unk>`` (or to an untrained embedding).
- **The tool syntax is a handful of tokens.** ``<tool_call>``, ``</tool_call>``, the four
  tool names and the fixed JSON fragments of a call (``{"name": "``, ``"memory_type": "``...)
  are added tokens, so a call is ~10 tokens plus its content: short completions are what a
  CPU can generate and what a tiny model can get exactly right. The observation's markup
  (``<core_memory>``, ``<new_chunk index="``...) is shortened the same way.

Decoding is exact: ``tokenizer.decode(tokenizer(text).input_ids) == text`` for any text.

Real models
-----------
:func:`load_pretrained` loads a local Hugging Face folder (``local_files_only=True``: never a
download; a missing folder is a :class:`rlmem.errors.ConfigError`). Its own chat template is
used; ``chat_template_kwargs`` (e.g. ``{"enable_thinking": False}`` for Qwen3) are passed to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlmem.envs.memalpha.evaluate import METRIC_KEYS
from rlmem.envs.memalpha.tools import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, TOOLS
from rlmem.errors import ConfigError

__all__ = [
    "CHAT_TEMPLATE",
    "EOS_TOKEN",
    "MARKUP_FRAGMENTS",
    "PAD_TOKEN",
    "TOOL_FRAGMENTS",
    "LLMWriter",
    "TinyModelSpec",
    "build_tiny",
    "build_tokenizer",
    "evaluate_llm_writer",
    "load_pretrained",
    "play_batch",
]

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
"""Special tokens of the tiny tokenizer: padding, start of a turn, end of a turn (= EOS)."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML-style template of the tiny tokenizer (a prompt rendered alone is a prefix of the
prompt + completion rendering, which TRL's SFT and GRPO trainers rely on)."""

TOOL_FRAGMENTS: tuple[str, ...] = (
    TOOL_CALL_OPEN,
    TOOL_CALL_CLOSE,
    *TOOLS,  # new_memory_insert, memory_update, memory_delete, search_memory
    '{"name": "',
    '", "arguments": {',
    '"memory_type": "',
    '"content": "',
    '"new_content": "',
    '"memory_id": "',
    '"query": "',
    '", ',
    '"}}',
)
"""Fixed pieces of the tool-call syntax that the tiny tokenizer keeps as single tokens
(the JSON that :func:`rlmem.envs.memalpha.tools.tool_call` writes)."""

MARKUP_FRAGMENTS: tuple[str, ...] = (
    "<memory>", "</memory>",
    *(f"<{t}_memory>" for t in ("core", "semantic", "episodic")),
    *(f"</{t}_memory>" for t in ("core", "semantic", "episodic")),
    " (the most recent ", " items)",
    "<last_tool_results>", "</last_tool_results>",
    '<new_chunk index="', "</new_chunk>", "<episode_end/>",
)
"""The env observation's fixed markup, also single tokens: byte-level BPE cannot merge
across ``<``/``_``/``>`` boundaries, and an empty memory would otherwise cost ~70 tokens."""

_WORD = re.compile(r"[A-Za-z]+")


# --------------------------------------------------------------------------- tiny model


@dataclass(frozen=True)
class TinyModelSpec:
    """Sizes of the locally built tokenizer and ``Qwen2ForCausalLM``."""

    vocab_size: int = 768
    """Target size of the BPE vocabulary (bytes + merges + special tokens); the tool
    fragments are added on top."""
    hidden_size: int = 128
    """Width of the residual stream (and of the tied input/output embeddings)."""
    num_layers: int = 4
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads (``hidden_size`` must be divisible by it)."""
    intermediate_size: int = 512
    """Width of each block's SwiGLU MLP."""
    max_positions: int = 4096
    """``max_position_embeddings`` of the config (RoPE base positions)."""
    seed: int = 0
    """Seed of the weight initialisation (the global torch RNG is left untouched)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"tiny model: {name} must be a positive integer, got {value!r}")
        if self.vocab_size < 300:
            raise ConfigError(f"tiny model: vocab_size must be >= 300 (256 bytes + specials + merges), got {self.vocab_size}")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ConfigError(
                f"tiny model: hidden_size ({self.hidden_size}) must split into num_heads ({self.num_heads}) "
                "heads of an even size (rotary embeddings)"
            )


def build_tokenizer(corpus_texts: Iterable[str], vocab_size: int = 768, hidden_words: Iterable[str] = ()):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``corpus_texts`` (see the module
    docstring), with :data:`CHAT_TEMPLATE`, EOS ``<|im_end|>``, pad ``<|endoftext|>``, left padding.

    Args:
        corpus_texts: training texts (observations, actions, instructions).
        vocab_size: BPE target size.
        hidden_words: words removed from the corpus before training, so no merge is learned
            from them (open-class names: they stay a few pieces, like unseen names).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    hidden = frozenset(hidden_words)

    def masked() -> Iterable[str]:
        for text in corpus_texts:
            yield _WORD.sub(lambda m: "" if m.group(0) in hidden else m.group(0), text) if hidden else text

    tok = Tokenizer(models.BPE())
    # Digits one by one (no merges across a number), then GPT-2's byte-level split: every
    # string is representable and decoding is exact.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, BOS_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(masked(), trainer)
    tok.add_tokens([AddedToken(f, normalized=False, special=False) for f in TOOL_FRAGMENTS + MARKUP_FRAGMENTS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=1_000_000,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny(corpus_texts: Iterable[str], spec: TinyModelSpec | None = None, hidden_words: Iterable[str] = ()):
    """``(model, tokenizer)``: :func:`build_tokenizer` on ``corpus_texts`` and a freshly
    initialised ``Qwen2ForCausalLM`` of ``spec``'s sizes (float32, eval mode, tied embeddings)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    spec = spec or TinyModelSpec()
    tokenizer = build_tokenizer(corpus_texts, spec.vocab_size, hidden_words)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS_TOKEN),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seeded init without moving the caller's RNG
        torch.manual_seed(spec.seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=config.bos_token_id
    )
    return model.eval(), tokenizer


# --------------------------------------------------------------------------- real models


def load_pretrained(path: str | Path, *, device: str = "cpu", dtype: str = "auto"):
    """``(model, tokenizer)`` from a local Hugging Face folder (never downloads).

    Args:
        path: a folder written by ``save_pretrained`` (config, safetensors, tokenizer files).
        device: where the model goes.
        dtype: ``"auto"`` (the checkpoint's), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ConfigError(f"no Hugging Face model folder at {path} (expected config.json and weights)")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, dtype=dtype if dtype == "auto" else getattr(torch, dtype)
        )
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot load the model at {path}: {first[:200]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model.to(device).eval(), tokenizer


# --------------------------------------------------------------------------- the writer


class LLMWriter:
    """A memory writer that generates its tool calls with a causal LM.

    Stateless between chunks: the observation (memory + new chunk) is the whole state, as in
    Mem-α, so :meth:`reset` does nothing and one writer can serve many episodes at once
    (:meth:`generate`).

    Args:
        model: a ``transformers`` causal LM (its device is used).
        tokenizer: its tokenizer, with a chat template and a pad token.
        max_new_tokens: completion length limit (tokens).
        system_prompt: a system message put before every observation (e.g.
            :data:`rlmem.envs.memalpha.env.WRITER_INSTRUCTIONS`), or None.
        do_sample: sample (with ``temperature``) instead of greedy decoding.
        temperature: sampling temperature (``do_sample=True`` only).
        batch_size: observations per ``generate`` call of the model.
        chat_template_kwargs: extra arguments of ``apply_chat_template`` (Qwen3:
            ``{"enable_thinking": False}``).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_new_tokens: int = 128,
        system_prompt: str | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        batch_size: int = 64,
        chat_template_kwargs: dict | None = None,
    ) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ConfigError("LLMWriter: the tokenizer has no chat template")
        if tokenizer.pad_token_id is None:
            raise ConfigError("LLMWriter: the tokenizer has no pad token")
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.batch_size = int(max_new_tokens), int(batch_size)
        self.system_prompt = system_prompt
        self.do_sample, self.temperature = bool(do_sample), float(temperature)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})

    def reset(self) -> None:
        """Nothing to forget: the writer keeps no state between chunks."""

    def messages(self, observation: str) -> list[dict[str, str]]:
        """The chat of one step: ``[system,] user=observation``."""
        chat = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return chat + [{"role": "user", "content": observation}]

    def prompt(self, observation: str) -> str:
        """The rendered prompt text, ending with the assistant turn's header."""
        return self.tokenizer.apply_chat_template(
            self.messages(observation), tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
        )

    def __call__(self, observation: str) -> str:
        return self.generate([observation])[0]

    def generate(self, observations: Sequence[str]) -> list[str]:
        """One action per observation (left-padded batches of ``batch_size``)."""
        out: list[str] = []
        for i in range(0, len(observations), self.batch_size):
            out.extend(self._generate([self.prompt(o) for o in observations[i:i + self.batch_size]]))
        return out

    def _generate(self, prompts: list[str]) -> list[str]:
        import torch

        tok, model = self.tokenizer, self.model
        side, tok.padding_side = tok.padding_side, "left"  # generation continues on the right
        try:
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = side
        enc = {k: v.to(model.device) for k, v in enc.items()}
        sampling = {"do_sample": True, "temperature": self.temperature, "top_k": 0, "top_p": 1.0} if self.do_sample else {
            "do_sample": False, "temperature": None, "top_k": None, "top_p": None}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                ids = model.generate(
                    **enc, max_new_tokens=self.max_new_tokens, pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id, **sampling,
                )
        finally:
            model.train(was_training)
        return tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


# --------------------------------------------------------------------------- batched play


def play_batch(envs: Sequence[Any], seeds: Sequence[int], act) -> list[dict[str, Any]]:
    """Play one episode in each env in lockstep; ``act(observations) -> actions`` is called
    once per round with the observations of the envs still running.

    Returns one dict per env, as :func:`rlmem.envs.memalpha.evaluate.run_episode`: the final
    info with ``reward`` (the return) and ``steps`` added.
    """
    obs = [env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]
    totals, steps = [0.0] * len(envs), [0] * len(envs)
    results: list[dict[str, Any] | None] = [None] * len(envs)
    running = list(range(len(envs)))
    while running:
        actions = act([obs[i] for i in running])
        still = []
        for i, action in zip(running, actions):
            obs[i], reward, terminated, truncated, info = envs[i].step(action)
            totals[i] += reward
            steps[i] += 1
            if terminated or truncated:
                results[i] = {**info, "reward": totals[i], "steps": steps[i]}
            else:
                still.append(i)
        running = still
    return results  # type: ignore[return-value]


def evaluate_llm_writer(
    writer: LLMWriter | Any,
    episodes: int = 200,
    split: str = "heldout",
    competencies: Sequence[str] | None = None,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    returns: list[float] | None = None,
) -> dict[str, dict[str, float]]:
    """:func:`rlmem.envs.memalpha.evaluate.evaluate_writer` with the episodes played in
    lockstep, so an LLM writer generates for all of them at once.

    Same episodes (round robin over competencies, seeds ``seed + j`` per competency), same
    table; ``writer`` needs ``generate(observations) -> actions`` (an :class:`LLMWriter`) and
    must be stateless across chunks (one instance serves every episode). A list passed as
    ``returns`` receives every episode's return.
    """
    from rlmem.envs.memalpha.data import COMPETENCIES, check_competencies
    from rlmem.envs.memalpha.env import MemoryConstructionEnv
    from rlmem.envs.memalpha.evaluate import EVAL_SEED

    seed = EVAL_SEED if seed is None else seed
    if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1:
        raise ConfigError(f"evaluate_llm_writer: episodes must be a positive integer, got {episodes!r}")
    names = check_competencies(competencies if competencies is not None else COMPETENCIES)
    kwargs = dict(env_kwargs or {})
    clash = sorted({"split", "competencies", "dataset"} & set(kwargs))
    if clash:
        raise ConfigError(f"evaluate_llm_writer: pass {clash} as arguments, not in env_kwargs")
    counts = [episodes // len(names) + (i < episodes % len(names)) for i in range(len(names))]
    envs, seeds, owner = [], [], []
    for name, count in zip(names, counts):
        for j in range(count):
            envs.append(MemoryConstructionEnv(split=split, competencies=(name,), **kwargs))
            seeds.append(seed + j)
            owner.append(name)
    results = play_batch(envs, seeds, writer.generate)
    if returns is not None:
        returns.extend(float(r["reward"]) for r in results)
    per: dict[str, list[dict[str, Any]]] = {}
    for name, r in zip(owner, results):
        per.setdefault(name, []).append(r)

    def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
        out: dict[str, float] = {"episodes": len(rows)}
        for key in METRIC_KEYS:
            out[key] = float(np.mean([float(r[key]) for r in rows]))
        return out

    table = {name: summarise(rows) for name, rows in per.items()}
    table["all"] = summarise([r for rows in per.values() for r in rows])
    return table
