"""Mem-α LLM writers with TRL: tokenizer, LLMWriter, SFT and GRPO steps with a tiny model, the CLI.

Real TRL trainers on a 2-layer, 32-wide Qwen2 (CPU, bf16 off); nothing is mocked.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
import torch

pytest.importorskip("trl", reason="the LLM writer tests need the llm extra: pip install 'rlmem[llm]'")

from rlmem.agents.heuristic_writers import HeuristicWriter, StoreEverything  # noqa: E402
from rlmem.agents.llm_writer import (  # noqa: E402
    EOS_TOKEN,
    MARKUP_FRAGMENTS,
    TOOL_FRAGMENTS,
    LLMWriter,
    TinyModelSpec,
    build_tiny,
    evaluate_llm_writer,
    load_pretrained,
)
from rlmem.algos import memalpha  # noqa: E402
from rlmem.cli import main  # noqa: E402
from rlmem.config import make_run_config  # noqa: E402
from rlmem.envs.memalpha.data import split_vocabulary  # noqa: E402
from rlmem.envs.memalpha.env import CHARSET, WRITER_INSTRUCTIONS, MemoryConstructionEnv  # noqa: E402
from rlmem.envs.memalpha.evaluate import evaluate_writer, run_episode  # noqa: E402
from rlmem.envs.memalpha.tools import parse_tool_calls  # noqa: E402
from rlmem.errors import ConfigError  # noqa: E402
from rlmem.runs import Run  # noqa: E402

torch.set_num_threads(1)

ENV_ID = "rlmem/MemoryConstruction-v0"
SIZES = {"n_chunks": 2, "n_questions": 1, "facts_per_chunk": 1, "distractors_per_chunk": 0,
         "examples_per_chunk": 1, "n_labels": 2}
SPEC = TinyModelSpec(vocab_size=400, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
CIRCUIT_SPEC = TinyModelSpec(vocab_size=400, hidden_size=128, num_layers=2, num_heads=2, intermediate_size=64)
LLM = {"vocab_size": 400, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
       "sft_episodes": 4, "sft_epochs": 1.0, "sft_batch_size": 4, "prompts_per_step": 2, "num_generations": 2,
       "max_completion_length": 12, "eval_episodes": 4, "stream_episodes": 1}
TRAIN_NAMES = {w.rstrip("_") for words in split_vocabulary("train").values() for w in words}


def config(total_steps: int = 8, **llm):
    return make_run_config({"algo": "memalpha", "total_steps": total_steps, "env_kwargs": {"sizes": SIZES},
                            "llm": {**LLM, **llm}}, env=ENV_ID)


@pytest.fixture(scope="module")
def pairs():
    return memalpha.demonstrations({"split": "train", "sizes": SIZES}, list(range(12)))


@pytest.fixture(scope="module")
def tiny(pairs):
    corpus = [t for p in pairs for t in p] + [WRITER_INSTRUCTIONS]
    return build_tiny(corpus, SPEC, hidden_words=TRAIN_NAMES)


# --------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trips_every_text_and_renders_the_chat(tiny, pairs, tmp_path):
    _, tok = tiny
    held_out = memalpha.demonstrations({"split": "heldout", "sizes": SIZES}, [3, 4])
    odd = "Ünïcödé “quotes” – dashes… and 4821 + \t tabs\n" + CHARSET
    for text in [t for p in pairs[:10] + held_out for t in p] + [odd, WRITER_INSTRUCTIONS, ""]:
        assert tok.decode(tok(text)["input_ids"]) == text
    # The tool syntax and the observation markup are single tokens.
    for fragment in TOOL_FRAGMENTS + MARKUP_FRAGMENTS:
        assert len(tok(fragment)["input_ids"]) == 1, fragment
    # Names are spelled in pieces, seen (train, hidden from the merges) or not (held-out).
    vocab = tok.get_vocab()
    for name in ("Anna", "Quentin", "otter", "heron"):
        pieces = tok.tokenize(" " + name)
        assert len(pieces) > 1 and all(p in vocab for p in pieces), pieces
    # Chat template: the prompt rendered alone is a prefix of prompt + completion (TRL relies on it).
    chat = [{"role": "user", "content": "Day 1."}]
    prompt = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(chat + [{"role": "assistant", "content": "ok"}], tokenize=False)
    assert prompt == "<|im_start|>user\nDay 1.<|im_end|>\n<|im_start|>assistant\n"
    assert full.startswith(prompt) and full.endswith(f"ok{EOS_TOKEN}\n")
    assert tok.eos_token == EOS_TOKEN and tok.pad_token_id is not None and tok.padding_side == "left"
    # A saved tokenizer reloads with its template (what `rlmem eval` reads back).
    model, _ = tiny
    memalpha.save_model(tmp_path / "m", model, tok)
    model2, tok2 = load_pretrained(tmp_path / "m")
    assert tok2.chat_template == tok.chat_template and tok2.decode(tok2(odd)["input_ids"]) == odd
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))


def test_load_pretrained_never_downloads(tmp_path):
    with pytest.raises(ConfigError, match="no Hugging Face model folder"):
        load_pretrained(tmp_path / "Qwen3-4B")
    with pytest.raises(ConfigError, match="no Hugging Face model folder"):
        load_pretrained("Qwen/Qwen3-4B")  # a hub id is not a folder: no request is made


def test_copy_circuit_copies_spans_it_never_saw(pairs):
    corpus = [t for p in pairs for t in p]
    wired, tok = build_tiny(corpus, CIRCUIT_SPEC, hidden_words=TRAIN_NAMES)
    plain, _ = build_tiny(corpus, replace(CIRCUIT_SPEC, copy_circuit=False), hidden_words=TRAIN_NAMES)
    # Random spans of plain BPE tokens, repeated after random filler: predict the repeat.
    gen = torch.Generator().manual_seed(0)
    n_plain = len(tok) - len(tok.get_added_vocab())
    span, filler = torch.randint(3, n_plain, (8, 30), generator=gen), torch.randint(3, n_plain, (8, 20), generator=gen)
    ids = torch.cat([span, filler, span], 1)

    def copied(model) -> float:
        with torch.no_grad():
            guess = model(input_ids=ids).logits.argmax(-1)
        return (guess[:, 50:-1] == ids[:, 51:]).float().mean().item()

    assert copied(wired) > 0.6 and copied(plain) < 0.05, (copied(wired), copied(plain))
    # At initialisation, a held-out name (never in the tokenizer's merges) is continued from its
    # earlier occurrence, piece by piece.
    text = "Day 2. The keeper of the golden pavilion is Umar. The golden pavilion was quiet."
    prompt = tok(text + " The keeper of the golden pavilion is", return_tensors="pt")
    n = len(tok(" Umar")["input_ids"])
    out = wired.generate(**prompt, max_new_tokens=n, do_sample=False)
    assert n > 1 and tok.decode(out[0, prompt["input_ids"].shape[1]:]) == " Umar"
    # Everything else starts as a zero residual branch; the model is an ordinary Qwen2.
    assert all(not layer.mlp.down_proj.weight.any() for layer in wired.model.layers)
    head_dim = CIRCUIT_SPEC.hidden_size // CIRCUIT_SPEC.num_heads
    assert not wired.model.layers[1].self_attn.o_proj.weight[:, head_dim:].any()  # layer 1 writes head 0 only
    assert type(wired).__name__ == "Qwen2ForCausalLM" and wired.config.rope_parameters["rope_theta"] == 1e6


def test_rename_names_keeps_demonstrations_correct_and_hides_training_names(pairs):
    renamed = memalpha.rename_names(pairs, TRAIN_NAMES, 1.0, seed=3)
    assert len(renamed) == len(pairs) and renamed == memalpha.rename_names(pairs, TRAIN_NAMES, 1.0, seed=3)
    assert memalpha.rename_names(pairs, TRAIN_NAMES, 0.0, seed=3) == pairs
    words = lambda text: set(re.findall(r"[A-Za-z]+", text))  # noqa: E731
    corpus_words = {w.lower() for p in pairs for t in p for w in words(t)}
    changed = 0
    for (obs, act), (new_obs, new_act) in zip(pairs, renamed):
        assert not words(new_obs + new_act) & TRAIN_NAMES
        new_words = words(new_obs + new_act) - words(obs + act)
        assert not {w.lower() for w in new_words} & corpus_words  # made-up words collide with nothing
        changed += new_obs != obs
        if 'index="1/' in obs:  # a first chunk: a fresh heuristic writes exactly the renamed action
            assert HeuristicWriter()(new_obs) == new_act
    assert changed == len(pairs)


# --------------------------------------------------------------------------- writer


def test_llm_writer_text_is_accepted_by_the_env(tiny):
    model, tok = tiny
    writer = LLMWriter(model, tok, max_new_tokens=12)
    env = MemoryConstructionEnv(split="heldout", sizes=SIZES)
    obs, _ = env.reset(seed=0)
    text = writer(obs)
    assert isinstance(text, str) and writer.generate([obs, obs]) == [text, text]  # greedy, left padding
    _, _, _, _, info = env.step(text)
    assert len(info["tool_results"]) == len(parse_tool_calls(text))

    # Push the real model towards "<tool_call>": an unterminated block is one failed, explained call.
    open_id = tok.convert_tokens_to_ids("<tool_call>")
    hook = model.lm_head.register_forward_hook(lambda m, i, out: out.index_add(
        -1, torch.tensor([open_id]), torch.full(out.shape[:-1] + (1,), 1e4)))
    try:
        result = run_episode(env, writer, seed=1)
    finally:
        hook.remove()
    assert result["steps"] == SIZES["n_chunks"] and result["tool_success_rate"] == 0.0
    failed = [r for r in result["tool_results"]]
    assert failed and not failed[0]["ok"] and "unterminated" in failed[0]["reason"]


def test_batched_evaluation_equals_evaluate_writer():
    class Stateless(StoreEverything):
        def generate(self, observations):
            return [self(o) for o in observations]

    kwargs = {"sizes": SIZES}
    assert evaluate_llm_writer(Stateless(), 6, "heldout", None, 11, kwargs) == evaluate_writer(
        Stateless(), 6, "heldout", None, 11, kwargs)


# --------------------------------------------------------------------------- TRL trainers


def test_sft_steps_with_trl_update_the_model(tiny, pairs, tmp_path):
    model, tok = tiny
    cfg = config()
    llm = memalpha.check_config(cfg)
    before = [p.detach().clone() for p in model.parameters()]
    rows = []
    summary = memalpha.run_sft(cfg, llm, model, tok, pairs[:8], None, rows.append, tmp_path)
    assert [r["sft_update"] for r in rows] == [1, 2] and all(r["step"] == 0 for r in rows)  # 8 examples / 4
    assert summary["sft_examples"] == 8 and torch.isfinite(torch.tensor(summary["sft_loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not model.training and next(model.parameters()).dtype == torch.float32  # bf16 off on CPU


def test_grpo_reward_is_the_episode_reward_with_the_chunks_own_tool_terms(tiny):
    model, tok = tiny
    llm = memalpha.check_config(config(continuation="none"))
    kwargs = {"split": "train", "sizes": SIZES, "competencies": ["accurate_retrieval"]}
    env = MemoryConstructionEnv(**kwargs)
    obs, _ = env.reset(seed=5)
    state = json.dumps(env.get_state())
    good = HeuristicWriter()(obs)
    bad = '<tool_call>{"name": "memory_delete", "arguments": {"memory_type": "semantic", "memory_id": "zzzz"}}</tool_call>'
    scorer = memalpha._Scorer(llm, kwargs, tok)
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in (good, bad, "")]
    rewards = scorer(None, None, ids, [state] * 3)
    # By hand: apply the action, nobody writes afterwards, then the reference's per-chunk sample reward.
    for action, reward in zip((good, bad, ""), rewards):
        env.set_state(json.loads(state))
        _, _, _, _, info = env.step(action)
        own = info["chunk_tool_success"] + env.gamma * info["chunk_validity"]
        _, _, terminated, _, final = env.step("")
        assert terminated
        terms = final["reward_terms"]
        assert reward == pytest.approx(terms["accuracy"] + env.beta * terms["compression"] + own)
    assert good and rewards[0] > rewards[1] == rewards[2]  # a failed call earns what no call earns
    assert [s["chunk_tool_success"] for s in scorer.stats] == [1.0, 0.0, 0.0]


def test_grpo_steps_with_trl_log_checkpoint_and_save(tiny, tmp_path):
    model, tok = tiny
    cfg = config(total_steps=8)  # 2 GRPO steps of 2 prompts x 2 generations
    llm = memalpha.check_config(cfg)
    run = Run.create(tmp_path / "run", cfg)
    seen = []
    last = memalpha.run_grpo(cfg, llm, model, tok, first_step=0, total=2, run=run, stop_after=None,
                             callback=lambda m: seen.append(m) and False, workdir=tmp_path / "work")
    assert [m["step"] for m in seen] == [4, 8] and [m["update"] for m in seen] == [1, 2]
    for key in ("episode_return", "reward_std", "accuracy", "chunk_tool_success", "loss", "completion_length"):
        assert key in last
    assert [r["step"] for r in run.metrics()] == [4, 8]
    ckpt = run.load_checkpoint()
    assert ckpt["phase"] == "grpo" and ckpt["update"] == 2 and ckpt["policy"]["dir"] == "model"
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    # beta > 0: the KL reference was loaded from the starting weights saved on disk, not from a hub id.
    assert llm.beta > 0 and model.config._name_or_path == str(tmp_path / "work" / "reference")
    assert (tmp_path / "work" / "reference" / "model.safetensors").is_file()
    assert not list((tmp_path / "run").glob(".tmp_*"))
    run.close()


# --------------------------------------------------------------------------- config and CLI


def test_config_errors_are_one_clear_message():
    with pytest.raises(ConfigError, match="unknown config key llm.lr; valid keys in llm: model"):
        config(lr=1e-3)
    with pytest.raises(ConfigError, match="bf16 = true needs a CUDA device"):
        config(bf16=True)
    with pytest.raises(ConfigError, match="use_vllm = true needs a CUDA device"):
        config(use_vllm=True)
    with pytest.raises(ConfigError, match="never downloaded"):
        config(model="Qwen/Qwen3-4B")
    with pytest.raises(ConfigError, match="num_generations must be >= 2"):
        config(num_generations=1)
    with pytest.raises(ConfigError, match="copy_circuit needs num_layers >= 2"):
        config(num_layers=1)
    assert memalpha.check_config(config(num_layers=1, copy_circuit=False)).num_layers == 1
    with pytest.raises(ConfigError, match="sft_rename must be a fraction"):
        config(sft_rename=1.5)
    with pytest.raises(ConfigError, match="trains LLM writers on rlmem/MemoryConstruction-v0"):
        make_run_config({"algo": "memalpha"}, env="rlmem/EndlessTMaze-v0")


PRESET = """algo = "memalpha"
total_steps = 8
checkpoint_every = 1
env_kwargs = {{ sizes = {{ n_chunks = 2, n_questions = 1, facts_per_chunk = 1, distractors_per_chunk = 0, examples_per_chunk = 1, n_labels = 2 }} }}

[llm]
vocab_size = 400
hidden_size = 32
num_layers = 2
num_heads = 2
intermediate_size = 64
sft_episodes = 4
sft_epochs = 1.0
sft_batch_size = 4
prompts_per_step = 2
num_generations = 2
max_completion_length = 12
eval_episodes = 4
stream_episodes = 1
{extra}
"""


def test_cli_train_pause_resume_and_eval_table(tmp_path, capsys):
    preset = tmp_path / "memalpha-test.toml"
    preset.write_text(PRESET.format(extra=""))
    args = ["train", "--env", ENV_ID, "--agent", str(preset), "--runs-dir", str(tmp_path), "--run-name", "r",
            "--threads", "1"]
    assert main(args + ["--stop-after", "4"]) == 0
    out = capsys.readouterr()
    assert "paused" in out.out and "step" in out.err  # the progress bar (tqdm, stderr)
    run_dir = tmp_path / "r"
    assert (run_dir / "sft_model" / "model.safetensors").is_file()
    assert json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 4
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert "done" in capsys.readouterr().out
    steps = [r["step"] for r in Run.open(run_dir).metrics() if "update" in r]
    assert steps == [4, 8]
    assert main(["eval", str(run_dir), "--episodes", "4"]) == 0
    printed = capsys.readouterr().out
    assert "by competency (GRPO writer)" in printed and "by writer" in printed
    for row in ("accurate_retrieval", "test_time_learning", "long_range_understanding", "conflict_resolution",
                "store_nothing", "heuristic", "sft (LLM)", "grpo (LLM)"):
        assert re.search(rf"^{re.escape(row)}\s+", printed, re.MULTILINE), row
    header = next(line for line in printed.splitlines() if "reward" in line)
    assert "accuracy" in header


@pytest.mark.parametrize("extra, fragment", [
    ("learning_rat = 1e-4", "unknown config key llm.learning_rat; valid keys in llm:"),
    ("bf16 = true", "bf16 = true needs a CUDA device"),
])
def test_cli_bad_llm_table_is_one_line_exit_2(tmp_path, capsys, extra, fragment):
    preset = tmp_path / "bad.toml"
    preset.write_text(PRESET.format(extra=extra))
    rc = main(["train", "--env", ENV_ID, "--agent", str(preset), "--runs-dir", str(tmp_path), "--run-name", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "x").exists()
