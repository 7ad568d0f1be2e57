"""Mem-α LLM memory writers trained with TRL: SFT warm start, then GRPO (``algo = "memalpha"``).

After Wang et al., "Mem-α: Learning Memory Construction via Reinforcement Learning" (2025,
arXiv 2509.25911), on ``rlmem/MemoryConstruction-v0``. Reads top to bottom:

1. **Model.** ``[llm] model = "tiny"`` builds a tokenizer and a randomly initialised
   ``Qwen2ForCausalLM`` locally (:func:`rlmem.agents.llm_writer.build_tiny`; corpus: the
   observations and demonstrations of training episodes plus ``WRITER_INSTRUCTIONS``, with the
   training split's names hidden from the BPE merges; a copy circuit wired into the initial
   weights). ``model = "/path/to/Qwen3-4B"`` loads a local Hugging Face folder instead (never
   a download).
2. **SFT warm start** (TRL ``SFTTrainer``): demonstrations of the heuristic writer
   (:class:`rlmem.agents.heuristic_writers.HeuristicWriter`) on ``sft_episodes`` TRAIN-split
   episodes, one conversational prompt-completion example per chunk (prompt = the env's
   observation, completion = the heuristic's tool calls); loss on the completion only
   (``sft_completion_only``). For the tiny model the training split's names are replaced by
   made-up words in ``sft_rename`` of the demonstrations (:func:`rename_names`), so it learns
   to copy names rather than memorise the ~130 of the training split. A pause asked during
   SFT (Ctrl-C) takes effect when it ends.
3. **GRPO** (TRL ``GRPOTrainer``), one group per *state*:

   - prompts are states visited by the current writer: an endless stream
     (``datasets.IterableDataset``) plays fresh TRAIN episodes with the current model
     (greedy, the writer that is evaluated) and yields the observation and the env state
     (``env.get_state()``) before every chunk;
   - GRPOTrainer samples ``num_generations`` completions per prompt (``temperature``);
   - the reward of a completion is an episode reward: the env is restored to the prompt's
     state, the completion is applied, the rest of the episode is written by the current
     model (greedy; ``continuation = "policy"``) or by nobody (``"none"``: a cheap, myopic
     variant), the answerer answers, and the sample gets ``accuracy + beta * compression``
     of that finished episode plus the chunk's own ``tool_success + gamma * validity``.
     That last part is what the reference does (each chunk's training sample gets the
     episode's accuracy and compression and its *own* tool-call success rate and content
     validity); the env's episode return averages the tool terms over the chunks instead.
   - advantages are standardised within the group (``scale_rewards``), the loss is TRL's
     (clipped ratio over ``num_iterations`` passes, ``loss_type``, KL ``beta`` to the model
     GRPO started from: the SFT model, or the resumed weights after ``--resume``).
   - continuations and the prompt stream generate with ``transformers``' ``generate`` on the
     training model, also when ``use_vllm`` makes TRL sample the scored completions with vLLM.

   **How this differs from the reference's GRPO.** The reference samples G whole
   trajectories per episode and gives every chunk sample of trajectory i the reward of
   trajectory i; its group shares the episode, not the state, so a chunk's advantage mixes
   the effect of its own action with everything sampled after it. Here the G completions of a
   group share the state (memory + chunk) and differ only in this chunk's action; the rest is
   written by one fixed policy, so the group-relative advantage is that action's effect on
   the episode reward (a one-step Monte Carlo advantage), at the price of ``len(chunks) - t``
   extra generations per sample for ``continuation = "policy"``. Prompts come from the
   current greedy writer rather than from the sampled trajectories themselves. TRL's
   ``environment_factory`` (tool) mode is not used: it grows one conversation over all the
   chunks, whereas a Mem-α writer sees only its memory and the current chunk.
4. **Evaluation** on HELD-OUT episodes (disjoint names) of the SFT-only model and of the
   GRPO model, in lockstep batches (:func:`rlmem.agents.llm_writer.evaluate_llm_writer`, the
   same episodes and table as :func:`rlmem.envs.memalpha.evaluate.evaluate_writer`).

Units. ``total_steps`` (``--steps``) counts **GRPO samples**: chunk actions sampled from the
policy and scored by the env, ``prompts_per_step * num_generations`` per GRPO step, so the
run does ``total_steps // (prompts_per_step * num_generations)`` GRPO steps. The SFT warm
start is sized by ``sft_episodes`` / ``sft_epochs``; its metrics rows have ``step = 0``.

Run folder. Besides rlmem's files, ``sft_model/`` (after SFT) and ``model/`` (the newest
GRPO weights) hold ``save_pretrained`` output (config, safetensors weights, tokenizer with its
chat template); each is written to a temporary folder and renamed into place. The rlmem
checkpoint (``checkpoints/step_*.pt``) is a small record (phase, GRPO step, folder names),
so ``rlmem eval`` / ``--resume`` find the newest weights. **Resume** continues from the saved
model: after SFT it starts GRPO, in GRPO it runs the remaining steps from ``model/`` on fresh
episodes. It is not bit-exact: the optimiser's moments and TRL's sampling RNG restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from rlmem.config import RunConfig, from_dict
from rlmem.errors import ConfigError, RunError
from rlmem.runs import Run

__all__ = ["LLMConfig", "check_config", "evaluate_run", "rename_names", "train"]

ENV_ID = "rlmem/MemoryConstruction-v0"
SFT_DIR, MODEL_DIR = "sft_model", "model"
BASELINES = ("store_nothing", "store_everything", "heuristic")
_SFT_SEEDS, _GRPO_SEEDS = 0, 5_000_000  # offsets of the training episode seeds (+ seed * 10M)
EVAL_OFFSET = 1_000_003  # = rlmem.evaluate.EVAL_SEED_OFFSET: held-out seeds start at seed + this


@dataclass(frozen=True)
class LLMConfig:
    """The ``[llm]`` table of a ``memalpha`` preset (TRL names in brackets)."""

    model: str = "tiny"
    """``"tiny"``: build a tokenizer and a small Qwen2 locally; else a local Hugging Face folder."""
    vocab_size: int = 768
    """Tiny model: BPE vocabulary size (bytes + merges + special tokens)."""
    hidden_size: int = 128
    """Tiny model: width."""
    num_layers: int = 4
    """Tiny model: transformer blocks."""
    num_heads: int = 2
    """Tiny model: attention heads."""
    intermediate_size: int = 256
    """Tiny model: MLP width."""
    rope_theta: float = 1e6
    """Tiny model: RoPE base (:class:`rlmem.agents.llm_writer.TinyModelSpec`)."""
    copy_circuit: bool = True
    """Tiny model: start from weights with a copy (induction) circuit wired in
    (:func:`rlmem.agents.llm_writer.wire_copy_circuit`); it lets the model copy names it never saw."""
    include_instructions: bool = False
    """Put ``WRITER_INSTRUCTIONS`` in a system message (real models; a tiny model gains nothing)."""
    chat_template_kwargs: dict = field(default_factory=dict)
    """Extra ``apply_chat_template`` arguments, e.g. ``{enable_thinking = false}`` for Qwen3."""
    dtype: str = "auto"
    """Local model: weights dtype when loading (auto, float32, bfloat16, float16)."""

    sft_episodes: int = 800
    """TRAIN episodes demonstrated by the heuristic writer (one example per chunk)."""
    sft_epochs: float = 2.0
    """Passes over the demonstrations (``num_train_epochs``)."""
    sft_learning_rate: float = 3e-4
    """SFT AdamW learning rate (cosine decay, 5% warm-up). Tiny model with the copy circuit: an
    Adam step moves every weight by about this much, and at 1e-3 the wired circuit was gone
    within 50 steps (measured); 3e-4 keeps and sharpens it."""
    sft_batch_size: int = 8
    """SFT examples per optimiser step (``per_device_train_batch_size``)."""
    sft_completion_only: bool = True
    """Loss on the demonstrated action only (``completion_only_loss``); false: also on the
    observation (language modelling of the chunks, free signal for a model trained from scratch)."""
    sft_rename: float = 1.0
    """Tiny model: fraction of demonstrations whose training-split names (places, people, towns,
    goods, passwords, label words) are replaced by made-up words, consistently within the
    demonstration (:func:`rename_names`). The training split has ~130 names: a small model
    learns their spellings instead of copying from the chunk, which fails on held-out names."""

    prompts_per_step: int = 4
    """Distinct prompts (states) per GRPO step."""
    num_generations: int = 8
    """G: completions per prompt (``num_generations``)."""
    learning_rate: float = 3e-4
    """GRPO AdamW learning rate (constant)."""
    beta: float = 0.04
    """KL coefficient to the SFT model (``beta``; 0 = no reference model; the paper: 0.001)."""
    epsilon: float = 0.2
    """Ratio clip (``epsilon``)."""
    num_iterations: int = 2
    """Optimiser steps on each batch of samples (``num_iterations``, GRPO's mu); > 1 reuses the
    costly samples (episode continuations) and makes the ratio clip active."""
    loss_type: str = "dapo"
    """TRL loss aggregation (``loss_type``): dapo, grpo, dr_grpo, bnpo..."""
    scale_rewards: str = "group"
    """Divide centred rewards by the group's std (``group``), the batch's (``batch``) or not (``none``)."""
    max_completion_length: int = 96
    """Most tokens per action, in GRPO and at evaluation (``max_completion_length``)."""
    temperature: float = 1.0
    """GRPO sampling temperature."""
    continuation: str = "policy"
    """Who writes the chunks after a scored completion: ``policy`` (the current model, greedy)
    or ``none`` (nobody: each action is scored as if it were the last write)."""
    stream_episodes: int = 4
    """TRAIN episodes played per refill of the GRPO prompt stream."""

    use_vllm: bool = False
    """Generate with vLLM (``use_vllm``; needs CUDA and ``pip install rlmem[vllm]``)."""
    vllm_mode: str = "colocate"
    """``colocate`` (vLLM in the training process) or ``server`` (``trl vllm-serve``)."""
    vllm_server_base_url: str = ""
    """Server mode: the ``trl vllm-serve`` URL (empty: TRL's default host and port)."""
    vllm_gpu_memory_utilization: float = 0.3
    """Colocate mode: GPU memory fraction vLLM may take."""
    bf16: bool = False
    """bfloat16 mixed precision (``bf16``; needs CUDA)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (``gradient_checkpointing``; big models)."""

    eval_episodes: int = 100
    """HELD-OUT episodes evaluated at the end of training (SFT-only and GRPO)."""

    @property
    def tiny(self) -> bool:
        return self.model == "tiny"

    def samples_per_step(self) -> int:
        return self.prompts_per_step * self.num_generations


def check_config(cfg: RunConfig) -> LLMConfig:
    """Parse and check ``cfg.llm`` (and the env this algorithm needs); returns the dataclass."""
    llm = from_dict(LLMConfig, cfg.llm, "llm")
    if cfg.env != ENV_ID:
        raise ConfigError(f"algo memalpha trains LLM writers on {ENV_ID}, not {cfg.env!r}")
    for key in ("split", "dataset"):
        if key in cfg.env_kwargs:
            raise ConfigError(f"algo memalpha sets env_kwargs.{key} itself (train on the train split, "
                              "evaluate on the held-out split); remove it")
    positive = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "sft_batch_size",
                "prompts_per_step", "num_iterations", "max_completion_length", "stream_episodes", "eval_episodes")
    for name in positive:
        if getattr(llm, name) < 1:
            raise ConfigError(f"llm.{name} must be positive, got {getattr(llm, name)}")
    checks = [
        (llm.sft_episodes >= 0, f"llm.sft_episodes must be >= 0, got {llm.sft_episodes}"),
        (llm.sft_epochs > 0, f"llm.sft_epochs must be positive, got {llm.sft_epochs}"),
        (0.0 <= llm.sft_rename <= 1.0, f"llm.sft_rename must be a fraction in [0, 1], got {llm.sft_rename}"),
        (llm.num_generations >= 2, f"llm.num_generations must be >= 2 (a group needs two samples), got {llm.num_generations}"),
        (llm.learning_rate > 0 and llm.sft_learning_rate > 0, "llm learning rates must be positive"),
        (llm.beta >= 0, f"llm.beta must be >= 0, got {llm.beta}"),
        (llm.epsilon > 0, f"llm.epsilon must be positive, got {llm.epsilon}"),
        (llm.temperature > 0, f"llm.temperature must be positive, got {llm.temperature}"),
        (llm.continuation in ("policy", "none"), f"llm.continuation must be policy or none, got {llm.continuation!r}"),
        (llm.scale_rewards in ("group", "batch", "none"), f"llm.scale_rewards must be group, batch or none, got {llm.scale_rewards!r}"),
        (llm.loss_type in ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
         f"llm.loss_type {llm.loss_type!r} is not a TRL GRPO loss type"),
        (llm.vllm_mode in ("colocate", "server"), f"llm.vllm_mode must be colocate or server, got {llm.vllm_mode!r}"),
        (llm.dtype in ("auto", "float32", "bfloat16", "float16"), f"llm.dtype must be auto, float32, bfloat16 or float16, got {llm.dtype!r}"),
        (llm.tiny or Path(llm.model).expanduser().is_dir(),
         f"llm.model must be \"tiny\" or a local model folder; {llm.model!r} is neither (models are never downloaded)"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    cuda = cfg.device.startswith("cuda") and torch.cuda.is_available()
    if llm.bf16 and not cuda:
        raise ConfigError("llm.bf16 = true needs a CUDA device (--device cuda); set bf16 = false on CPU")
    if llm.use_vllm and not cuda:
        raise ConfigError("llm.use_vllm = true needs a CUDA device (vLLM's weight sync is GPU-only); set use_vllm = false on CPU")
    if llm.tiny:
        _spec(llm)  # a bad size is a ConfigError now, not after the demonstrations
    return llm


def _spec(llm: LLMConfig, seed: int = 0):
    from rlmem.agents.llm_writer import TinyModelSpec

    return TinyModelSpec(llm.vocab_size, llm.hidden_size, llm.num_layers, llm.num_heads, llm.intermediate_size,
                         rope_theta=llm.rope_theta, copy_circuit=llm.copy_circuit, seed=seed)


# --------------------------------------------------------------------------- data


def _env_kwargs(cfg: RunConfig, split: str) -> dict[str, Any]:
    return {**cfg.env_kwargs, "split": split}


def demonstrations(env_kwargs: dict[str, Any], seeds: list[int], writer: str = "heuristic") -> list[tuple[str, str]]:
    """``(observation, action)`` of ``writer`` at every chunk of the episodes ``seeds``."""
    from rlmem.agents.heuristic_writers import make_writer
    from rlmem.envs.memalpha.env import MemoryConstructionEnv

    env, pairs = MemoryConstructionEnv(**env_kwargs), []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        w = make_writer(writer)
        while True:
            action = w(obs)
            pairs.append((obs, action))
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    return pairs


# Made-up words for rename_names: one to three syllables (onset, vowel, optional coda), so a
# made-up name is spelled in the same kind of sub-word pieces as a real one.
_ONSETS = "b c d f g h j k l m n p r s t v w z br ch cr dr fl gr pl qu sh st th tr".split()
_VOWELS = "a e i o u y ai ea ou ie".split()
_CODAS = ("", "", "", "n", "r", "l", "s", "t", "m", "ck", "nd", "st", "x")
_WORDS = re.compile(r"[A-Za-z]+")


def rename_names(pairs: list[tuple[str, str]], names: set[str], fraction: float, seed: int) -> list[tuple[str, str]]:
    """``pairs`` with, in a ``fraction`` of them, every word of ``names`` replaced by a made-up
    word: the same word gets the same replacement in the observation and the action, and
    a capitalised name gets a capitalised one. Replacements never collide with a word of
    ``pairs``. The demonstration stays a correct one (the heuristic only copies names), but
    its names can no longer be memorised: the model has to copy them from the chunk.
    """
    if fraction <= 0 or not names or not pairs:
        return list(pairs)
    rng = random.Random(seed)
    taken = {w.lower() for pair in pairs for text in pair for w in _WORDS.findall(text)}
    pattern = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")\b")

    def made_up() -> str:
        while True:
            word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                           for _ in range(rng.randint(1, 3)))
            if len(word) >= 3 and word not in taken:
                return word

    out = []
    for observation, action in pairs:
        if rng.random() >= fraction:
            out.append((observation, action))
            continue
        table: dict[str, str] = {}

        def sub(m: re.Match) -> str:
            word = m.group(0)
            if word not in table:
                new = made_up()
                table[word] = new.capitalize() if word[0].isupper() else new
            return table[word]

        out.append((pattern.sub(sub, observation), pattern.sub(sub, action)))
    return out


def _messages(llm: LLMConfig, observation: str) -> list[dict[str, str]]:
    from rlmem.envs.memalpha.env import WRITER_INSTRUCTIONS

    system = [{"role": "system", "content": WRITER_INSTRUCTIONS}] if llm.include_instructions else []
    return system + [{"role": "user", "content": observation}]


def make_writer(llm: LLMConfig, model, tokenizer, *, sample: bool = False):
    """The :class:`rlmem.agents.llm_writer.LLMWriter` of this config (greedy unless ``sample``)."""
    from rlmem.agents.llm_writer import LLMWriter
    from rlmem.envs.memalpha.env import WRITER_INSTRUCTIONS

    return LLMWriter(
        model, tokenizer, max_new_tokens=llm.max_completion_length,
        system_prompt=WRITER_INSTRUCTIONS if llm.include_instructions else None,
        do_sample=sample, temperature=llm.temperature, chat_template_kwargs=llm.chat_template_kwargs,
    )


# --------------------------------------------------------------------------- model folders


def save_model(folder: Path, model, tokenizer) -> None:
    """``save_pretrained`` (safetensors) of model + tokenizer into ``folder``, atomically:
    written to a temporary sibling, then renamed (an old folder is moved aside first)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".tmp_{folder.name}_"))
    try:
        with _quiet():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        old = folder.with_name(folder.name + ".old")
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_model(folder: Path, device: str = "cpu"):
    """``(model, tokenizer)`` of a folder written by :func:`save_model` (or its ``.old`` twin
    when a crash fell between the two renames)."""
    from rlmem.agents.llm_writer import load_pretrained

    folder = Path(folder)
    if not folder.is_dir() and folder.with_name(folder.name + ".old").is_dir():
        folder = folder.with_name(folder.name + ".old")
    if not folder.is_dir():
        raise RunError(f"no saved model at {folder}")
    try:
        with _quiet():
            return load_pretrained(folder, device=device, dtype="float32" if device == "cpu" else "auto")
    except ConfigError as e:
        raise RunError(f"the model at {folder} is corrupt: {e}") from None


# --------------------------------------------------------------------------- TRL glue


@contextlib.contextmanager
def _quiet():
    """Silence transformers / datasets / TRL chatter (library code never prints)."""
    import datasets
    import transformers

    tf_level, ds_level = transformers.logging.get_verbosity(), datasets.logging.get_verbosity()
    bars, tf_bars = datasets.is_progress_bar_enabled(), transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    old_env = os.environ.get("TRL_EXPERIMENTAL_SILENCE")
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(tf_level)
        datasets.logging.set_verbosity(ds_level)
        if bars:
            datasets.enable_progress_bars()
        if tf_bars:
            transformers.utils.logging.enable_progress_bar()
        if old_env is None:
            os.environ.pop("TRL_EXPERIMENTAL_SILENCE", None)
        else:
            os.environ["TRL_EXPERIMENTAL_SILENCE"] = old_env


def _trainer_args(cfg: RunConfig, llm: LLMConfig, out: Path) -> dict[str, Any]:
    """TrainingArguments shared by both trainers: CPU-safe precision, no saving, no reporting."""
    return {
        "output_dir": str(out),
        "use_cpu": not cfg.device.startswith("cuda"),
        "bf16": llm.bf16,
        "fp16": False,
        "gradient_checkpointing": llm.gradient_checkpointing,  # TRL's default is True: slow on CPU
        "save_strategy": "no",
        "report_to": "none",
        "logging_steps": 1,
        "disable_tqdm": True,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "dataloader_num_workers": 0,
    }


def _bridge(trainer, on_log: Callable[[dict, Any, Any], None]):
    """Route ``trainer``'s logs to ``on_log(logs, state, control)`` through a
    ``TrainerCallback`` (which makes rlmem metrics rows, calls the CLI callback, checkpoints
    and stops on a pause request); drop the callbacks that print (library code never prints)."""
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    class Bridge(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and ("loss" in logs or "reward" in logs) and "train_runtime" not in logs:
                on_log(dict(logs), state, control)
            return control

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(Bridge())
    return trainer


# --------------------------------------------------------------------------- SFT


def run_sft(cfg: RunConfig, llm: LLMConfig, model, tokenizer, pairs: list[tuple[str, str]], run: Run | None,
            callback: Callable[[dict], Any] | None, workdir: Path) -> dict[str, float]:
    """Warm start: TRL ``SFTTrainer`` on ``pairs``. Returns its summary; ``pause_asked`` is
    true when the callback asked for a pause (the SFT is finished first: it has no checkpoint
    of its own)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [{"prompt": _messages(llm, o), "completion": [{"role": "assistant", "content": a}]} for o, a in pairs]
    t0, last, asked = time.perf_counter(), {}, []

    def on_log(logs: dict, state, control) -> None:
        nonlocal last
        last = {"sft_update": state.global_step, "sft_loss": float(logs.get("loss", float("nan"))),
                "sft_epoch": float(logs.get("epoch", 0.0)),
                "sft_examples_per_s": state.global_step * llm.sft_batch_size / max(time.perf_counter() - t0, 1e-9)}
        if run is not None:
            run.log(0, last)
        if callback is not None and callback({"step": 0, **last}):
            asked.append(True)

    with _quiet():
        args = SFTConfig(
            **_trainer_args(cfg, llm, workdir / "sft"),
            per_device_train_batch_size=llm.sft_batch_size,
            num_train_epochs=llm.sft_epochs,
            learning_rate=llm.sft_learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,  # a fraction of the steps
            weight_decay=0.0,
            max_length=None,  # observations are bounded by the env; never cut a demonstration
            packing=False,
            completion_only_loss=llm.sft_completion_only,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
        _bridge(trainer, on_log).train()
    model.eval()
    return {"sft_examples": len(rows), "sft_seconds": time.perf_counter() - t0, "pause_asked": bool(asked), **last}


# --------------------------------------------------------------------------- GRPO


class _Scorer:
    """The GRPO reward: restore the prompt's env state, apply the completion, finish the
    episode (continuation policy), answer; ``accuracy + beta * compression`` of the episode
    plus the chunk's own ``tool_success + gamma * validity`` (module docstring, step 3)."""

    def __init__(self, llm: LLMConfig, env_kwargs: dict[str, Any], tokenizer):
        self.llm, self.env_kwargs, self.tokenizer = llm, env_kwargs, tokenizer
        self.writer = None  # set once the trainer's model exists (continuation = "policy")
        self.stats: list[dict[str, float]] = []  # per scored sample, read by the metrics bridge
        self.__name__ = "episode_reward"  # TRL names the reward column after it

    def __call__(self, prompts, completions, completion_ids, state, **_) -> list[float]:
        from rlmem.envs.memalpha.env import MemoryConstructionEnv

        # Decode the ids ourselves: a tokenizer with a response schema (Qwen3) would parse
        # the <tool_call> blocks out of the message content TRL hands to reward functions.
        texts = self.tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
        envs, own, finals, obs = [], [], [None] * len(texts), [None] * len(texts)
        for i, (text, s) in enumerate(zip(texts, state)):
            env = MemoryConstructionEnv(**self.env_kwargs)
            env.set_state(json.loads(s))
            obs[i], _, terminated, _, info = env.step(text)
            envs.append(env)
            own.append((info["chunk_tool_success"], info["chunk_validity"]))
            if terminated:
                finals[i] = info
        running = [i for i in range(len(texts)) if finals[i] is None]
        while running:  # the rest of each episode, in lockstep over the samples
            if self.llm.continuation == "policy":
                actions = self.writer.generate([obs[i] for i in running])
            else:
                actions = [""] * len(running)
            still = []
            for i, action in zip(running, actions):
                obs[i], _, terminated, _, info = envs[i].step(action)
                if terminated:
                    finals[i] = info
                else:
                    still.append(i)
            running = still
        rewards = []
        for env, (success, validity), info in zip(envs, own, finals):
            terms = info["reward_terms"]
            reward = terms["accuracy"] + env.beta * terms["compression"] + success + env.gamma * validity
            rewards.append(float(reward))
            self.stats.append({"accuracy": terms["accuracy"], "chunk_tool_success": success,
                               "chunk_validity": validity, "compression": terms["compression"],
                               "success": float(info["success"])})
        return rewards


def _state_stream(llm: LLMConfig, env_kwargs: dict[str, Any], holder: dict, first_seed: int):
    """Generator of GRPO prompts: states visited by the current greedy writer on fresh TRAIN
    episodes (``holder["writer"]`` is read at every refill, so the stream follows training).
    Rows: ``prompt`` (chat messages) and ``state`` (``env.get_state()`` as JSON)."""
    from rlmem.envs.memalpha.env import MemoryConstructionEnv

    def gen():
        seed = first_seed
        while True:
            envs = [MemoryConstructionEnv(**env_kwargs) for _ in range(llm.stream_episodes)]
            obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
            seed += len(envs)
            rows, running = [], list(range(len(envs)))
            while running:
                rows += [{"prompt": _messages(llm, obs[i]), "state": json.dumps(envs[i].get_state())} for i in running]
                actions = holder["writer"].generate([obs[i] for i in running])
                still = []
                for i, action in zip(running, actions):
                    obs[i], _, terminated, truncated, _ = envs[i].step(action)
                    if not (terminated or truncated):
                        still.append(i)
                running = still
            yield from rows

    return gen


def run_grpo(cfg: RunConfig, llm: LLMConfig, model, tokenizer, *, first_step: int, total: int, run: Run | None,
             stop_after: int | None, callback, workdir: Path) -> dict:
    """GRPO steps ``first_step + 1 .. total`` with TRL's ``GRPOTrainer`` (module docstring, step 3)."""
    from datasets import IterableDataset
    from trl import GRPOConfig, GRPOTrainer

    env_kwargs = _env_kwargs(cfg, "train")
    per_step = llm.samples_per_step()
    scorer = _Scorer(llm, env_kwargs, tokenizer)
    holder = {"writer": make_writer(llm, model, tokenizer)}
    scorer.writer = holder["writer"]
    # Each (re)start draws episodes nobody has seen: seeds move on with the GRPO step.
    first_seed = cfg.seed * 10_000_000 + _GRPO_SEEDS + first_step * per_step
    stream = IterableDataset.from_generator(_state_stream(llm, env_kwargs, holder, first_seed))
    if llm.beta > 0:
        # TRL loads the KL reference from the model's name_or_path: point it at the SFT weights
        # on disk (never at a hub id, never at the base model a local path would give).
        ref = run.path / SFT_DIR if run is not None and (run.path / SFT_DIR).is_dir() else workdir / "reference"
        if not ref.is_dir():
            save_model(ref, model, tokenizer)
        model.config._name_or_path = str(ref)
    t0, result, pending = time.perf_counter(), {}, {}

    def on_log(logs: dict, state, control) -> None:
        nonlocal result
        pending.update(logs)  # with num_iterations > 1, a batch's logs span several optimiser steps
        if state.global_step % llm.num_iterations:
            return
        logs = dict(pending)
        pending.clear()
        done = state.global_step // llm.num_iterations  # sample batches finished in this call
        grpo_step = first_step + done
        step = grpo_step * per_step
        stats, scorer.stats[:] = list(scorer.stats), []
        mean = lambda k: float(np.mean([s[k] for s in stats])) if stats else float("nan")  # noqa: E731
        metrics = {
            "update": grpo_step,
            "step": step,
            "sps": done * per_step / max(time.perf_counter() - t0, 1e-9),
            "episode_return": float(logs.get("reward", float("nan"))),
            "reward_std": float(logs.get("reward_std", float("nan"))),
            "success": mean("success"),
            "accuracy": mean("accuracy"),
            "chunk_tool_success": mean("chunk_tool_success"),
            "chunk_validity": mean("chunk_validity"),
            "compression": mean("compression"),
            "completion_length": float(logs.get("completions/mean_length", float("nan"))),
            "loss": float(logs.get("loss", float("nan"))),
            "kl": float(logs.get("kl", 0.0)),
            "entropy": float(logs.get("entropy", float("nan"))),
            "clip_ratio": float(logs.get("clip_ratio/region_mean", 0.0)),
            "grad_norm": float(logs.get("grad_norm", float("nan"))),
            "lr": float(logs.get("learning_rate", llm.learning_rate)),
        }
        result = metrics
        if run is not None:
            run.log(step, metrics)
        asked = bool(callback(metrics)) if callback is not None else False
        pause = asked or (stop_after is not None and step >= stop_after)
        last = grpo_step >= total
        if pause and not last:
            control.should_training_stop = True
            metrics["paused"] = True
        if run is not None and (pause or last or grpo_step % cfg.checkpoint_every == 0):
            _checkpoint(run, model, tokenizer, "grpo", grpo_step, step)

    with _quiet():
        args = GRPOConfig(
            **_trainer_args(cfg, llm, workdir / "grpo"),
            max_steps=(total - first_step) * llm.num_iterations,
            num_iterations=llm.num_iterations,
            per_device_train_batch_size=per_step,
            gradient_accumulation_steps=1,
            num_generations=llm.num_generations,
            max_completion_length=llm.max_completion_length,
            temperature=llm.temperature,
            learning_rate=llm.learning_rate,
            lr_scheduler_type="constant",
            weight_decay=0.0,
            beta=llm.beta,
            epsilon=llm.epsilon,
            loss_type=llm.loss_type,
            scale_rewards=llm.scale_rewards,
            shuffle_dataset=False,  # a stream: order is the behaviour policy's
            chat_template_kwargs=llm.chat_template_kwargs or None,
            use_vllm=llm.use_vllm,
            vllm_mode=llm.vllm_mode,
            vllm_server_base_url=llm.vllm_server_base_url or None,
            vllm_gpu_memory_utilization=llm.vllm_gpu_memory_utilization,
            log_completions=False,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=[scorer], args=args, train_dataset=stream,
                              processing_class=tokenizer)
        _bridge(trainer, on_log).train()
    model.eval()
    return result


def _checkpoint(run: Run, model, tokenizer, phase: str, grpo_step: int, step: int) -> None:
    """Save the weights (``model/``), then the small rlmem record that points at them."""
    save_model(run.path / MODEL_DIR, model, tokenizer)
    run.save_checkpoint(step, {
        "version": 1, "algo": "memalpha", "phase": phase, "update": grpo_step, "step": step,
        "policy": {"format": "save_pretrained", "dir": MODEL_DIR, "sft_dir": SFT_DIR},
    })


# --------------------------------------------------------------------------- train


def train(
    cfg: RunConfig,
    run: Run | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    callback: Callable[[dict], Any] | None = None,
) -> dict:
    """Build/load, SFT, GRPO, evaluate (module docstring); returns the last metrics."""
    llm = check_config(cfg)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)
    device = "cuda" if cfg.device.startswith("cuda") else "cpu"
    per_step = llm.samples_per_step()
    total = max(1, cfg.total_steps // per_step)  # GRPO steps
    workdir = Path(tempfile.mkdtemp(prefix="rlmem_memalpha_"))  # TRL's output_dir: nothing is kept there
    summary: dict[str, Any] = {}
    try:
        first = 0
        if resume:
            if run is None:
                raise ValueError("resume needs a run")
            ckpt = run.load_checkpoint()
            if ckpt.get("algo") != "memalpha":
                raise RunError(f"checkpoint of {run.path} is not a memalpha checkpoint")
            first = int(ckpt["update"])
            run.truncate_metrics(int(ckpt["step"]))
            model, tokenizer = load_model(run.path / MODEL_DIR, device)
        else:
            model, tokenizer, summary = _warm_start(cfg, llm, run, callback, workdir, device)
            if run is not None:
                save_model(run.path / SFT_DIR, model, tokenizer)
                _checkpoint(run, model, tokenizer, "sft", 0, 0)
        metrics = {k: v for k, v in summary.items() if k != "pause_asked"}
        if summary.get("pause_asked") and run is not None:  # Ctrl-C during SFT: stop at its checkpoint
            return {**metrics, "step": 0, "paused": True}
        if first < total:
            metrics = run_grpo(cfg, llm, model, tokenizer, first_step=first, total=total, run=run,
                               stop_after=stop_after, callback=callback, workdir=workdir)
        if metrics.get("paused"):
            return metrics
        if run is not None:
            evals = _evaluate_models(run, llm, episodes=llm.eval_episodes, seed=cfg.seed + EVAL_OFFSET,
                                     env_kwargs=_env_kwargs(cfg, "heldout"), device=device)
            final = {f"eval_{name}_{k}": v for name, table in evals.items() for k, v in table["all"].items()
                     if k in ("reward", "accuracy")}
            run.log(int(metrics.get("step", 0)), final)
            metrics = {**metrics, **final}
        return metrics
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if run is not None:
            run.close()


def _warm_start(cfg, llm, run, callback, workdir, device):
    """(1) build or load the model, (2) SFT on heuristic demonstrations of TRAIN episodes."""
    from rlmem.agents.llm_writer import build_tiny, load_pretrained
    from rlmem.envs.memalpha.data import split_vocabulary
    from rlmem.envs.memalpha.env import WRITER_INSTRUCTIONS

    base = cfg.seed * 10_000_000 + _SFT_SEEDS
    pairs = demonstrations(_env_kwargs(cfg, "train"), list(range(base, base + llm.sft_episodes)))
    if llm.tiny:
        corpus = [t for pair in pairs for t in pair] + [WRITER_INSTRUCTIONS]
        if not pairs:  # no SFT: the tokenizer still needs text of the task
            corpus += [t for pair in demonstrations(_env_kwargs(cfg, "train"), list(range(base, base + 50)))
                       for t in pair]
        names = {w.rstrip("_") for words in split_vocabulary("train").values() for w in words}
        model, tokenizer = build_tiny(corpus, _spec(llm, cfg.seed), hidden_words=names)
        # After the tokenizer is built: its merges come from the real text, names hidden.
        pairs = rename_names(pairs, names, llm.sft_rename, seed=cfg.seed)
    else:
        with _quiet():
            model, tokenizer = load_pretrained(Path(llm.model).expanduser(), device=device, dtype=llm.dtype)
    model.to(device)
    summary = run_sft(cfg, llm, model, tokenizer, pairs, run, callback, workdir) if pairs else {}
    return model, tokenizer, summary


# --------------------------------------------------------------------------- evaluate


def _evaluate_models(run: Run, llm: LLMConfig, *, episodes: int, seed: int, env_kwargs: dict, device: str = "cpu",
                     sample: bool = False, returns: dict[str, list] | None = None) -> dict[str, dict]:
    """Per-competency tables of the SFT-only and final models on the same episodes (a dict
    passed as ``returns`` receives each model's episode returns)."""
    from rlmem.agents.llm_writer import evaluate_llm_writer

    kwargs = {k: v for k, v in env_kwargs.items() if k not in ("split", "competencies", "dataset")}
    competencies = env_kwargs.get("competencies")
    split = env_kwargs.get("split", "heldout")
    out = {}
    for name, folder in (("sft", SFT_DIR), ("grpo", MODEL_DIR)):
        if not (run.path / folder).is_dir() and not (run.path / (folder + ".old")).is_dir():
            continue
        with _quiet():
            model, tokenizer = load_model(run.path / folder, device)
            writer = make_writer(llm, model, tokenizer, sample=sample)
            got: list[float] = []
            out[name] = evaluate_llm_writer(writer, episodes, split, competencies, seed, kwargs, returns=got)
            if returns is not None:
                returns[name] = got
    return out


def evaluate_run(run: Run, *, episodes: int, seed: int, deterministic: bool = True, env_kwargs: dict | None = None,
                 num_envs: int = 32):
    """Evaluate the run's writers on HELD-OUT episodes; ``breakdown`` holds the tables.

    ``breakdown["by competency (GRPO writer)"]``: reward, accuracy and the other terms per
    competency of the newest model. ``breakdown["by writer"]``: the ``all`` row of the three
    scripted baselines, the SFT-only model and the GRPO model on the same episodes.
    ``num_envs`` is unused (the episodes run in one lockstep batch).
    """
    from rlmem.envs.memalpha.evaluate import evaluate_writer
    from rlmem.evaluate import EvalResult, wilson_interval

    cfg = run.config
    llm = check_config(cfg)
    kwargs = {**_env_kwargs(cfg, "heldout"), **(env_kwargs or {})}
    device = "cuda" if cfg.device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    returns: dict[str, list] = {}
    tables = _evaluate_models(run, llm, episodes=episodes, seed=seed, env_kwargs=kwargs, device=device,
                              sample=not deterministic, returns=returns)
    if "grpo" not in tables:
        raise RunError(f"{run.path} has no saved model ({MODEL_DIR}/)")
    plain = {k: v for k, v in kwargs.items() if k not in ("split", "competencies", "dataset")}
    by_writer = {
        name: evaluate_writer(name, episodes, kwargs["split"], kwargs.get("competencies"), seed, plain)["all"]
        for name in BASELINES
    }
    by_writer["sft (LLM)"] = tables["sft"]["all"] if "sft" in tables else {}
    by_writer["grpo (LLM)"] = tables["grpo"]["all"]
    cols = ("reward", "accuracy", "compression", "tool_success_rate", "validity")
    grpo = tables["grpo"]
    n = int(grpo["all"]["episodes"])
    successes = round(grpo["all"]["success"] * n)
    return EvalResult(
        episodes=n,
        success=grpo["all"]["success"],
        success_ci=wilson_interval(successes, n),
        mean_return=grpo["all"]["reward"],
        std_return=float(np.std(returns["grpo"])),
        mean_length=float(_n_chunks(kwargs)),
        breakdown={
            "by competency (GRPO writer)": {
                k: {"episodes": int(v["episodes"]), **{c: v[c] for c in cols}} for k, v in grpo.items()
            },
            "by writer (held-out, all competencies)": {k: {c: v[c] for c in cols if c in v} for k, v in by_writer.items()},
        },
    )


def _n_chunks(env_kwargs: dict) -> int:
    from rlmem.envs.memalpha.data import GeneratorConfig

    return GeneratorConfig.from_mapping(env_kwargs.get("sizes")).n_chunks
