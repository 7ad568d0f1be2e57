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
initialised ``Qwen2ForCausalLM`` of a few layers from a config. Three choices make it work on
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
- **The model starts with a copy circuit.** Spelling a name in known pieces is not enough: the
  model must also *copy* those pieces from the chunk, which a pretrained LLM does with
  induction heads and a tiny model trained from scratch does not learn in a CPU budget (it
  learns the training names instead). :func:`wire_copy_circuit` writes one induction head into
  the random initial weights (``TinyModelSpec.copy_circuit``); SFT then learns when to use it.

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
    "wire_copy_circuit",
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
    rope_theta: float = 1e6
    """RoPE base (Qwen2's): most rotary pairs of a head turn slowly, which the copy circuit's
    content match needs (a pair that turns fast compares tokens differently at every distance)."""
    copy_circuit: bool = True
    """Wire a copy circuit into the random initialisation (:func:`wire_copy_circuit`); needs
    ``num_layers >= 2`` and ``num_heads >= 2``."""
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
        if not (isinstance(self.rope_theta, (int, float)) and not isinstance(self.rope_theta, bool)
                and self.rope_theta > 1):
            raise ConfigError(f"tiny model: rope_theta must be a number > 1, got {self.rope_theta!r}")
        if self.copy_circuit and (self.num_layers < 2 or self.num_heads < 2 or self.hidden_size % 2):
            raise ConfigError(
                "tiny model: copy_circuit needs num_layers >= 2, num_heads >= 2 and an even hidden_size "
                f"(got {self.num_layers} layers, {self.num_heads} heads, hidden {self.hidden_size}); "
                "set copy_circuit = false for a plain random initialisation"
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
        rope_parameters={"rope_type": "default", "rope_theta": float(spec.rope_theta)},
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS_TOKEN),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seeded init without moving the caller's RNG
        torch.manual_seed(spec.seed)
        model = Qwen2ForCausalLM(config)
        if spec.copy_circuit:
            wire_copy_circuit(model, seed=spec.seed)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=config.bos_token_id
    )
    return model.eval(), tokenizer


# Strengths of the wired copy circuit (see wire_copy_circuit). Measured on repeated spans of
# random tokens (vocabulary 800, hidden 128, 2 heads): ~0.9 of the repeated tokens are
# predicted at initialisation; the two-token match (_SECOND) lowered the SFT loss on the
# task's demonstrations from 0.45 to 0.25 nats per completion token.
_EMBED_NORM = 1.0    # norm of a token embedding (the token half of the residual stream)
_PREV_MARGIN = 8.0   # logit margin of the previous-token heads' target position over its neighbours
_MATCH_LOGIT = 14.0  # attention logit of an exact token match in the induction head
_COPY_GAIN = 4.0     # copied token vs current token, in the residual stream read by the unembedding
_SECOND = 0.5        # weight of the token two back (match two tokens, not one: "b|le" vs "id|le")
_MATCH_SPAN = 512    # the content match uses rotary pairs that turn < 0.5 rad over this many positions


def wire_copy_circuit(model, seed: int = 0) -> dict[str, float]:
    """Wire a copy circuit (an induction head) into a freshly initialised ``Qwen2ForCausalLM``, in place.

    Why: a pretrained LLM brings induction heads ("the token after the earlier occurrence of
    the current token", Olsson et al. 2022) from pretraining; that is how it copies a name it
    has never seen. A tiny model trained from scratch does not form them in a CPU budget
    (measured: 4000 steps of a pure copy task on repeated random spans did not; SFT on the
    writer's demonstrations learned the *training* names' spellings instead, so held-out
    names came out wrong). So the circuit is written into the initial weights; everything
    stays an ordinary trainable Qwen2 (TRL, ``save_pretrained``, vLLM see nothing special).

    Layout, with the residual stream split into a token half ``[0, h)`` and a context half
    ``[h, 2h)`` (``h = hidden_size / 2``):

    - embeddings live in the token half (norm :data:`_EMBED_NORM`); the tied unembedding reads it;
    - every ``o_proj`` and ``down_proj`` starts at zero (as zero-initialised residual branches):
      at initialisation the model is embeddings -> circuit -> unembedding, and SFT grows the rest;
    - layer 0, head 0 attends to the previous position, head 1 to the one before (rotary
      position only: constant query and key biases, zero weights), and both write that token's
      embedding into the context half (weights 1 and :data:`_SECOND`);
    - layer 1, head 0 (the induction head) matches its query (the current token, plus
      :data:`_SECOND` x the previous one) against each key's context half, in the rotary pairs
      that barely turn over :data:`_MATCH_SPAN` positions (``rope_theta`` sets how many), and
      copies the matched position's own token into the token half (:data:`_COPY_GAIN`).

    Nothing here knows the task: it copies any span it has seen before in its context.
    Returns a few derived numbers (pairs used for the match, attention scales).
    """
    import math

    import torch

    cfg = model.config
    d, n_heads = cfg.hidden_size, cfg.num_attention_heads
    hd, h = d // n_heads, d // 2
    k = min(hd, h)  # token dimensions a head can carry
    layers = model.model.layers
    if len(layers) < 2 or n_heads < 2:
        raise ConfigError("copy circuit: needs at least 2 layers and 2 heads")
    theta = float(cfg.rope_parameters["rope_theta"])
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)  # [hd/2] rotary frequencies
    slow = [p for p in range(hd // 2) if inv[p] * _MATCH_SPAN <= 0.5]
    if not slow:
        raise ConfigError(f"copy circuit: no rotary pair of a {hd}-wide head turns slowly enough with "
                          f"rope_theta = {theta:g}; raise rope_theta or the head size")
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for layer in layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.get_input_embeddings().weight
        emb.zero_()
        emb[:, :h] = torch.randn(emb.shape[0], h, generator=gen) * (_EMBED_NORM / math.sqrt(h))
        # RMSNorm gives vectors of norm sqrt(d); a head's output is scaled back to embedding size.
        back = _EMBED_NORM / math.sqrt(d) * math.sqrt(2)

        # Layer 0: positional heads. Score(i, j) = amp * sum_p cos(w_p (j - i + offset)) / sqrt(hd),
        # largest at j = i - offset; amp gives a margin of _PREV_MARGIN over offsets one away.
        att0 = layers[0].self_attn
        amp = _PREV_MARGIN * math.sqrt(hd) / float((1 - torch.cos(inv)).sum())
        for head, (offset, weight) in enumerate(((1, 1.0), (2, _SECOND))):
            rows = slice(head * hd, (head + 1) * hd)
            query, key = torch.zeros(hd, dtype=torch.float64), torch.zeros(hd, dtype=torch.float64)
            query[: hd // 2] = amp
            key[: hd // 2], key[hd // 2:] = torch.cos(offset * inv), torch.sin(offset * inv)
            for proj in (att0.q_proj, att0.k_proj, att0.v_proj):
                proj.weight[rows] = 0.0
                proj.bias[rows] = 0.0
            att0.q_proj.bias[rows] = query.float()
            att0.k_proj.bias[rows] = key.float()
            att0.v_proj.weight[head * hd: head * hd + k, :k] = torch.eye(k)
            att0.o_proj.weight[h:h + k, head * hd: head * hd + k] = torch.eye(k) * (weight * back)

        # Layer 1, head 0: induction. Query = current token (+ the previous one), key = the
        # context half, both projected onto the slow rotary pairs; value = the key's own token.
        att1 = layers[1].self_attn
        dims = slow + [p + hd // 2 for p in slow]
        n = max(len(dims), k)
        proj = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))[0][: len(dims), :k].float()
        proj *= math.sqrt(k / min(len(dims), k))  # keep inner products when projecting down
        scale = _MATCH_LOGIT * math.sqrt(hd) / h  # each half of a normalised residual has norm ~ sqrt(h)
        rows = slice(0, hd)
        for p_ in (att1.q_proj, att1.k_proj, att1.v_proj):
            p_.weight[rows] = 0.0
            p_.bias[rows] = 0.0
        att1.q_proj.weight[dims, :k] = proj * scale
        att1.q_proj.weight[dims, h:h + k] = proj * (scale * _SECOND)
        att1.k_proj.weight[dims, h:h + k] = proj
        att1.v_proj.weight[:k, :k] = torch.eye(k)
        att1.o_proj.weight[:k, :k] = torch.eye(k) * (_COPY_GAIN * back)
    return {"slow_pairs": float(len(slow)), "position_amplitude": amp, "match_scale": scale}


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
