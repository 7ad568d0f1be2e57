"""Mem-α memory construction: store, tools, parser fuzz, answerer, generator, loader, env, baselines."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlmem.agents.heuristic_writers import HeuristicWriter, StoreEverything, StoreNothing, make_writer
from rlmem.envs import memory_types
from rlmem.envs.memalpha.answerer import (
    BM25Answerer,
    HFAnswerer,
    OpenAIAnswerer,
    make_answerer,
    normalize_answer,
    score_answer,
)
from rlmem.envs.memalpha.data import (
    COMPETENCIES,
    Episode,
    GeneratorConfig,
    generate_episode,
    load_episodes,
    split_vocabulary,
)
from rlmem.envs.memalpha.env import CHARSET, MemoryConstructionEnv
from rlmem.envs.memalpha.evaluate import evaluate_writer, run_episode
from rlmem.envs.memalpha.reward import RewardTerms, content_validity
from rlmem.envs.memalpha.store import TRUNCATION_MARKER, MemoryStore
from rlmem.envs.memalpha.text import BM25, count_tokens, split_sentences, terms
from rlmem.envs.memalpha.tools import TOOL_SCHEMAS, TOOLS, parse_tool_calls, run_action, tool_call
from rlmem.errors import ConfigError, RunError, UnknownNameError

torch.set_num_threads(1)

ENV_ID = "rlmem/MemoryConstruction-v0"


def call(name: str, **args) -> str:
    return tool_call(name, **args)


# --------------------------------------------------------------------------- text


def test_count_tokens_counts_words_and_punctuation():
    assert count_tokens("Day 3, 4821.") == 5
    assert count_tokens("") == 0
    assert count_tokens("  don't  ") == 3  # don ' t


def test_terms_drop_stopwords_and_stem():
    assert terms("Which towns did the caravan visit?") == ["town", "caravan", "visit"]
    assert terms("the caravan visited towns") == ["caravan", "visit", "town"]


def test_split_sentences():
    assert split_sentences("Day 3. The gate is red!\nLabel 2: x y") == ["Day 3.", "The gate is red!", "Label 2: x y"]


def test_bm25_matches_hand_computation():
    docs = [["a", "b"], ["b", "c", "c"], ["d"]]
    index = BM25(docs)
    k1, b, avgdl, n = 1.5, 0.75, 2.0, 3
    idf_c = math.log(1 + (n - 1 + 0.5) / (1 + 0.5))
    idf_b = math.log(1 + (n - 2 + 0.5) / (2 + 0.5))
    expected_doc1 = idf_c * 2 * (k1 + 1) / (2 + k1 * (1 - b + b * 3 / avgdl)) + idf_b * 1 * (k1 + 1) / (
        1 + k1 * (1 - b + b * 3 / avgdl)
    )
    scores = index.scores(["c", "b"])
    assert scores[1] == pytest.approx(expected_doc1)
    assert scores[2] == 0.0
    assert [i for i, _ in index.ranking(["c", "b"])] == [1, 0]
    assert BM25([]).scores(["x"]) == []


def test_bm25_ties_keep_document_order():
    index = BM25([["x", "old"], ["x", "new"]])
    assert [i for i, _ in index.ranking(["x"])] == [0, 1]


# --------------------------------------------------------------------------- store


def test_insert_update_delete_search():
    s = MemoryStore(id_seed=1)
    a = s.insert("semantic", "The keeper of the red gate is Anna.")
    b = s.insert("semantic_memory", "The passcode of the blue vault is 4821.")
    assert len(a) == 4 and a != b and set(a) <= set("abcdefghijklmnopqrstuvwxyz0123456789")
    assert s.insert("semantic", "  The keeper of the red gate is Anna.  ") is None  # duplicate: skipped
    assert len(s.semantic) == 2
    assert s.update("semantic", "The keeper of the red gate is Vera.", a) is False
    assert s.semantic[0] == {"id": a, "content": "The keeper of the red gate is Vera."}  # updated in place
    hits = s.search("semantic", "passcode blue vault")
    assert hits[0]["id"] == b and hits[0]["score"] > 0 and len(hits) == 1
    s.delete("semantic", a)
    assert [i["id"] for i in s.semantic] == [b]
    s.update("core", "Running notes.")
    assert s.core == "Running notes."
    s.delete("core")
    assert s.core == ""
    assert s.total_tokens() == count_tokens("The passcode of the blue vault is 4821.")


@pytest.mark.parametrize(
    "op, match",
    [
        (lambda s: s.insert("core", "x y z"), "core memory cannot be inserted"),
        (lambda s: s.update("semantic", "x y z"), "memory_id is required"),
        (lambda s: s.update("semantic", "x y z", "zzzz"), "no semantic memory with id"),
        (lambda s: s.delete("episodic", "zzzz"), "no episodic memory with id"),
        (lambda s: s.insert("semantic", "   "), "content is empty"),
        (lambda s: s.insert("procedural", "x"), "unknown memory_type"),
        (lambda s: s.search("core", "x"), "not allowed"),
    ],
)
def test_store_errors(op, match):
    from rlmem.envs.memalpha.store import MemoryOpError

    with pytest.raises(MemoryOpError, match=match):
        op(MemoryStore())


def test_caps_and_core_truncation_marker():
    s = MemoryStore(max_items=2, max_item_tokens=5, core_max_tokens=40)
    s.insert("episodic", "one two")
    s.insert("episodic", "three four")
    from rlmem.envs.memalpha.store import MemoryOpError

    with pytest.raises(MemoryOpError, match="full"):
        s.insert("episodic", "five six")
    with pytest.raises(MemoryOpError, match="at most 5"):
        s.insert("semantic", "a b c d e f")
    long = " ".join(f"w{i}" for i in range(100))
    assert s.update("core", long) is True
    assert s.core.endswith(TRUNCATION_MARKER) and s.core.startswith("w0 w1")
    assert count_tokens(s.core) <= 40
    assert s.update("core", "short") is False and s.core == "short"


def test_ids_are_deterministic_per_seed_and_roundtrip():
    def fill(seed):
        s = MemoryStore(id_seed=seed)
        return s, [s.insert("semantic", f"fact number {k}") for k in range(30)]

    s1, ids1 = fill(7)
    _, ids2 = fill(7)
    _, ids3 = fill(8)
    assert ids1 == ids2 and ids1 != ids3 and len(set(ids1)) == 30
    restored = MemoryStore.from_dict(json.loads(json.dumps(s1.to_dict())))
    assert restored == s1
    assert restored.insert("episodic", "On day 3 it rained.") == s1.insert("episodic", "On day 3 it rained.")
    with pytest.raises(ConfigError):
        MemoryStore.from_dict({"core": ""})


def test_render_shows_core_and_the_20_most_recent_items():
    s = MemoryStore()
    s.update("core", "Core text.")
    ids = [s.insert("semantic", f"item {k}") for k in range(25)]
    text = s.render()
    assert "Core text." in text and "(the most recent 20 of 25 items)" in text
    assert f"[{ids[5]}] item 5" in text and f"[{ids[4]}] item 4" not in text
    assert "<episodic_memory> (the most recent 0 of 0 items)\nEmpty." in text


# --------------------------------------------------------------------------- tools + parser


def test_run_action_executes_blocks_in_order():
    s = MemoryStore()
    text = "thinking... " + call("new_memory_insert", memory_type="semantic", content="The gate is red.") + "\n" + call(
        "search_memory", memory_type="semantic", query="gate"
    )
    results = run_action(s, text)
    assert [r["ok"] for r in results] == [True, True]
    new_id = results[0]["result"]["id"]
    assert results[1]["result"]["results"][0]["id"] == new_id
    update = call("memory_update", memory_type="semantic", new_content="The gate is blue.", memory_id=new_id)
    results = run_action(s, update)
    assert results[0]["ok"] and s.semantic[0]["content"] == "The gate is blue."
    # arguments as a JSON string (OpenAI wire format)
    arguments = json.dumps({"memory_type": "semantic", "memory_id": new_id})
    raw = "<tool_call>" + json.dumps({"name": "memory_delete", "arguments": arguments}) + "</tool_call>"
    assert run_action(s, raw)[0]["ok"] and not s.semantic


@pytest.mark.parametrize(
    "text, reason",
    [
        ("<tool_call>{not json}</tool_call>", "malformed JSON"),
        ("<tool_call>[1, 2]</tool_call>", "must be a JSON object"),
        ('<tool_call>{"arguments": {}}</tool_call>', "needs a string 'name'"),
        ('<tool_call>{"name": "x", "arguments": {}, "id": 3}</tool_call>', "unexpected keys"),
        ('<tool_call>{"name": "memory_delete", "arguments": 5}</tool_call>', "must be a JSON object"),
        ('<tool_call>{"name": "forget_all", "arguments": {}}</tool_call>', "unknown tool"),
        (call("new_memory_insert", memory_type="semantic"), "missing argument"),
        (call("new_memory_insert", memory_type="semantic", content="a b c", tag="x"), "unexpected argument"),
        (call("new_memory_insert", memory_type="semantic", content=42), "must be a string"),
        (call("new_memory_insert", memory_type="core", content="a b c"), "not allowed"),
        (call("new_memory_insert", memory_type="working", content="a b c"), "unknown memory_type"),
        (call("memory_update", memory_type="semantic", new_content="a b c", memory_id="zz99"), "no semantic memory"),
        (call("memory_delete", memory_type="episodic"), "memory_id is required"),
        (call("new_memory_insert", memory_type="episodic", content="word " * 2000), "holds at most"),
        (call("search_memory", memory_type="semantic", query="x", search_method="text-embedding"), "not available"),
        (call("search_memory", memory_type="semantic", query="x", search_method="tfidf"), "unknown search_method"),
        ('<tool_call>{"name": "memory_delete", "arguments": {"memory_type": "core"}}', "unterminated"),
    ],
)
def test_bad_calls_become_failed_calls_with_reasons(text, reason):
    results = run_action(MemoryStore(), text)
    assert len(results) == 1
    assert results[0]["ok"] is False and results[0]["status"] == "error"
    assert reason in results[0]["reason"]


def test_duplicate_insert_is_skipped_not_successful():
    s = MemoryStore()
    block = call("new_memory_insert", memory_type="semantic", content="The gate is red.")
    results = run_action(s, block + block)
    assert [r["status"] for r in results] == ["ok", "skipped"] and not results[1]["ok"]


def test_too_many_calls_are_recorded_and_not_executed():
    s = MemoryStore()
    text = "".join(call("new_memory_insert", memory_type="semantic", content=f"fact {k} here") for k in range(5))
    results = run_action(s, text, max_calls=3)
    assert [r["ok"] for r in results] == [True, True, True, False] + [False]
    assert len(s.semantic) == 3 and "more than 3" in results[4]["reason"]


def test_tool_schemas_describe_every_tool():
    assert [t["function"]["name"] for t in TOOL_SCHEMAS] == list(TOOLS)
    update = TOOL_SCHEMAS[1]["function"]["parameters"]
    assert update["required"] == ["memory_type", "new_content"] and "memory_id" in update["properties"]


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_calls = st.builds(
    lambda name, args: call(name, **args) if all(k.isidentifier() for k in args) else json.dumps(args),
    st.sampled_from(list(TOOLS) + ["bogus"]),
    st.dictionaries(
        st.sampled_from(["memory_type", "content", "new_content", "memory_id", "query", "search_method", "x"]),
        st.sampled_from(["core", "semantic", "episodic", "semantic_memory", "nope", "", "abcd"]) | _json_values,
        max_size=4,
    ),
)
_actions = st.lists(
    st.one_of(st.text(max_size=60), _calls, st.sampled_from(["<tool_call>", "</tool_call>", "{", '"name"'])),
    max_size=8,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_actions)
def test_fuzz_parser_never_raises_and_records_every_block(text):
    store = MemoryStore()
    results = run_action(store, text)
    assert len(results) == len(parse_tool_calls(text))
    for r in results:
        assert set(r) == {"name", "arguments", "ok", "status", "reason", "result"}
        assert r["ok"] == (r["status"] == "ok")
        assert r["ok"] or r["reason"]
    json.dumps(results)  # JSON-safe, always
    assert MemoryStore.from_dict(store.to_dict()) == store


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_actions, min_size=2, max_size=2), st.integers(0, 2**16))
def test_fuzz_env_keeps_running_on_arbitrary_actions(actions, seed):
    env = MemoryConstructionEnv(sizes={"n_chunks": 2, "n_questions": 2})
    obs, _ = env.reset(seed=seed)
    for k, action in enumerate(actions):
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert np.isfinite(reward) and not truncated
        assert all("reason" in r for r in info["tool_results"])
    assert terminated and "accuracy" in info


def test_env_accepts_non_text_actions_as_failed_calls():
    env = MemoryConstructionEnv(sizes={"n_chunks": 2, "n_questions": 1})
    env.reset(seed=0)
    _, _, _, _, info = env.step(None)
    assert info["tool_results"][0]["ok"] is False and "must be a string" in info["tool_results"][0]["reason"]
    _, _, terminated, _, info = env.step(call("memory_delete", memory_type="core").encode())
    assert terminated and info["tool_results"][0]["ok"]


# --------------------------------------------------------------------------- validity + reward


@pytest.mark.parametrize(
    "name, args, valid",
    [
        ("new_memory_insert", {"memory_type": "semantic", "content": "The keeper of the red gate is Anna."}, 1.0),
        ("new_memory_insert", {"memory_type": "semantic", "content": "gate"}, 0.0),
        ("new_memory_insert", {"memory_type": "episodic", "content": "On day 3, the caravan visited Brin."}, 1.0),
        ("new_memory_insert", {"memory_type": "episodic", "content": "The caravan visited Brin."}, 0.0),
        ("memory_update", {"memory_type": "core", "new_content": "Label 1: reef tide."}, 1.0),
        ("memory_update", {"memory_type": "core", "new_content": "The core memory has been updated."}, 0.0),
        ("memory_update", {"memory_type": "core", "new_content": "Here we save the summary."}, 0.0),
        ("memory_update", {"memory_type": "core", "new_content": "Summary: ..."}, 0.0),
        ("memory_update", {"memory_type": "bogus", "new_content": "Anything at all here."}, 0.0),
    ],
)
def test_content_validity_rules(name, args, valid):
    assert content_validity({"name": name, "arguments": args})[0] == valid


def test_delete_and_search_are_not_judged():
    assert content_validity({"name": "memory_delete", "arguments": {"memory_type": "core"}}) is None
    assert content_validity({"name": None, "arguments": None}) is None


FACT = "The passcode of the blue locker is 4821."
HAND_EPISODE = Episode(
    chunks=("Day 1. " + FACT + " The gate was quiet.", "Day 2. Rain fell on the mill until the evening bells."),
    questions=("What is the passcode of the blue locker?", "What is the keeper of the red gate?"),
    answers=(("4821",), ("Anna",)),
    competency="accurate_retrieval",
    metric="exact",
)


@pytest.mark.parametrize("timing", ["end", "per_step"])
def test_reward_arithmetic_on_a_hand_made_episode(timing):
    env = MemoryConstructionEnv(reward_timing=timing, beta=0.05, gamma=0.1)
    env.reset(seed=0, options={"episode": HAND_EPISODE})
    step1 = call("new_memory_insert", memory_type="semantic", content=FACT) + call("forget", x="y")
    _, r1, term1, _, info1 = env.step(step1)
    assert not term1 and [r["ok"] for r in info1["tool_results"]] == [True, False]
    assert info1["chunk_tool_success"] == 0.5 and info1["chunk_validity"] == 1.0  # the unknown tool is not judged
    _, r2, term2, _, info2 = env.step("nothing to store")
    assert term2 and info2["chunk_tool_success"] == 0.0 and info2["chunk_validity"] == 0.0
    accuracy = 0.5  # the passcode is answered, the keeper was never stored
    compression = 1 - count_tokens(FACT) / sum(count_tokens(c) for c in HAND_EPISODE.chunks)
    tool_success, validity = (0.5 + 0.0) / 2, (1.0 + 0.0) / 2
    expected = accuracy + 0.05 * compression + tool_success + 0.1 * validity
    assert info2["correct"] == [True, False] and info2["predictions"] == ["4821", ""]
    assert info2["accuracy"] == accuracy and info2["compression"] == pytest.approx(compression)
    assert info2["tool_success_rate"] == tool_success and info2["validity"] == validity
    assert info2["reward_terms"]["total"] == pytest.approx(expected) and info2["success"] is False
    assert r1 + r2 == pytest.approx(expected)
    if timing == "end":
        assert r1 == 0.0
    else:
        assert r1 == pytest.approx((0.5 + 0.1 * 1.0) / 2)


def test_reward_terms_total():
    t = RewardTerms(accuracy=0.5, compression=-0.2, tool_success=1.0, validity=0.5, beta=0.05, gamma=0.1)
    assert t.total == pytest.approx(0.5 - 0.01 + 1.0 + 0.05)
    assert RewardTerms.compression_of(30, 100) == pytest.approx(0.7)


# --------------------------------------------------------------------------- answerer


def _store(semantic=(), core="", episodic=()):
    s = MemoryStore()
    for text in semantic:
        s.insert("semantic", text)
    for text in episodic:
        s.insert("episodic", text)
    if core:
        s.update("core", core)
    return s


def test_answerer_key_questions():
    a = BM25Answerer()
    s = _store(["The keeper of the red gate is Anna.", "The passcode of the blue locker is 4821.",
                "The passcode of the red locker is 1111."])
    assert a.answer(s, "What is the passcode of the blue locker?") == "4821"
    assert a.answer(s, "What is the keeper of the red gate?") == "Anna"
    assert a.answer(s, "What is the keeper of the green mill?") == ""
    assert a.answer(MemoryStore(), "What is the keeper of the red gate?") == ""
    s2 = _store(episodic=["Day 2. Rain fell. Update: the keeper of the red gate is now Vera. The mill was quiet."])
    assert a.answer(s2, "What is the keeper of the red gate?") == "Vera"


def test_answerer_does_not_prefer_recency_on_ties():
    a = BM25Answerer()
    stale = _store(["The keeper of the red gate is Anna.", "The keeper of the red gate is Vera."])
    assert a.answer(stale, "What is the keeper of the red gate?") == "Anna"  # the earlier item wins
    fixed = _store(["The keeper of the red gate is Anna."])
    fixed.update("semantic", "The keeper of the red gate is Vera.", fixed.semantic[0]["id"])
    assert a.answer(fixed, "What is the keeper of the red gate?") == "Vera"


def test_answerer_labels_counts_and_lists():
    a = BM25Answerer()
    core = ("Label 0: reef tide gull. Label 1: anvil rivet ingot. Total crates of salt delivered: 11. "
            "Total crates of wool delivered: 4. Towns the caravan visited: Avel, Brin.")
    s = _store(core=core)
    assert a.answer(s, "Which label fits: rivet quite anvil?") == "1"
    assert a.answer(s, "How many crates of salt were delivered in total?") == "11"
    assert a.answer(s, "Which towns did the caravan visit?") == "Avel, Brin"
    verbatim = _store(episodic=["Day 1. Example: tide reef often gull => label 0.\nExample: anvil ingot => label 1.",
                                "Day 2. On day 2, the caravan delivered 5 crates of salt."])
    assert a.answer(verbatim, "Which label fits: ingot anvil rather?") == "1"
    assert a.answer(verbatim, "How many crates of salt were delivered in total?") == "5"  # not a total


def test_metrics():
    assert normalize_answer("The  Blue-Locker.") == "blue locker"
    assert score_answer("4821.", ("4821",), "exact") == 1.0
    assert score_answer("It is 4821", ("4821",), "exact") == 0.0
    assert score_answer("It is 4821", ("4821",), "contains") == 1.0
    assert score_answer("It is 48210", ("4821",), "contains") == 0.0
    assert score_answer("Brin, Avel", ("Avel, Brin",), "set") == 1.0
    assert score_answer("Avel and Brin", ("Avel, Brin",), "set") == 1.0
    assert score_answer("Avel", ("Avel, Brin",), "set") == 0.0
    assert score_answer("", ("x",), "set") == 0.0
    assert score_answer("x", ("y", "x"), "exact") == 1.0
    with pytest.raises(ConfigError):
        score_answer("x", ("x",), "fuzzy")


def test_make_answerer():
    assert isinstance(make_answerer(None), BM25Answerer) and isinstance(make_answerer("bm25"), BM25Answerer)
    custom = BM25Answerer(top_k=3)
    assert make_answerer(custom) is custom
    with pytest.raises(UnknownNameError):
        make_answerer("gpt")


def test_openai_answerer_request_without_network(monkeypatch):
    import urllib.request

    sent = {}

    class Reply:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return json.dumps({"choices": [{"message": {"content": "<think>hm</think> 4821"}}]}).encode()

    def fake_urlopen(request, timeout):
        sent["url"], sent["body"] = request.full_url, json.loads(request.data)
        sent["auth"] = request.get_header("Authorization")
        return Reply()

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    answerer = OpenAIAnswerer("http://localhost:8000/v1/", "qwen", api_key="k")
    s = _store([FACT])
    assert answerer.answer(s, "What is the passcode of the blue locker?") == "4821"
    assert sent["url"] == "http://localhost:8000/v1/chat/completions" and sent["auth"] == "Bearer k"
    assert FACT in sent["body"]["messages"][0]["content"] and sent["body"]["model"] == "qwen"

    def failing(request, timeout):
        raise OSError("connection refused")

    monkeypatch.setattr(urllib.request, "urlopen", failing)
    with pytest.raises(RunError, match="connection refused"):
        answerer.answer(s, "What?")
    with pytest.raises(ConfigError):
        OpenAIAnswerer("localhost:8000", "qwen")


@pytest.mark.slow  # importing transformers dominates (~6 s of CPU)
def test_hf_answerer_runs_a_local_model():
    transformers = pytest.importorskip("transformers")

    class CharTokenizer:
        """Bytes as tokens: enough to drive generate() without any download."""

        chat_template = None
        pad_token_id = 0
        eos_token_id = 0

        def __call__(self, text, return_tensors):
            return {"input_ids": torch.tensor([[min(b, 127) for b in text.encode()[-200:]]])}

        def decode(self, ids, skip_special_tokens):
            return "".join(chr(int(i)) for i in ids if int(i) > 31)

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=128, n_positions=256, n_embd=16, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(config).eval()
    answerer = HFAnswerer(model, CharTokenizer(), max_new_tokens=4)
    s = _store([FACT])
    assert "Question: What is the passcode" in answerer.prompt(s, "What is the passcode of the blue locker?")
    out = answerer.answer(s, "What is the passcode of the blue locker?")
    assert isinstance(out, str) and len(out) <= 4
    assert out == answerer.answer(s, "What is the passcode of the blue locker?")  # greedy: deterministic


# --------------------------------------------------------------------------- generator + loader


@pytest.mark.parametrize("competency", COMPETENCIES)
def test_generator_is_deterministic(competency):
    a = generate_episode(competency, np.random.default_rng(5), "train")
    b = generate_episode(competency, np.random.default_rng(5), "train")
    c = generate_episode(competency, np.random.default_rng(6), "train")
    assert a == b and a != c
    assert a.competency == competency and len(a.chunks) == 6 and len(a.questions) == len(a.answers) == 4
    assert Episode.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert Episode(chunks=["c"], questions=["q?"], answers=["x"]).answers == (("x",),)


@pytest.mark.parametrize("competency", COMPETENCIES)
def test_reference_memory_answers_every_question(competency):
    answerer = BM25Answerer()
    for seed in range(25):
        for split in ("train", "heldout"):
            ep = generate_episode(competency, np.random.default_rng(seed), split)
            store = _store(ep.reference_memory)
            got = [score_answer(answerer.answer(store, q), a, ep.metric) for q, a in zip(ep.questions, ep.answers)]
            assert got == [1.0] * len(got), (seed, split, ep.questions)


def test_splits_are_disjoint():
    train, held = split_vocabulary("train"), split_vocabulary("heldout")
    train_words = {w.lower() for ws in train.values() for w in ws}
    held_words = {w.lower() for ws in held.values() for w in ws}
    assert not train_words & held_words

    def words(split):
        out = set()
        for competency in COMPETENCIES:
            for seed in range(20):
                ep = generate_episode(competency, np.random.default_rng(seed), split)
                for text in ep.chunks + ep.questions:
                    out |= {w.lower() for w in text.replace(",", " ").replace(".", " ").replace("?", " ").split()}
        return out

    train_seen, held_seen = words("train"), words("heldout")
    assert train_seen & held_words == set() and held_seen & train_words == set()
    assert train_seen & train_words and held_seen & held_words


def test_generator_config_validation():
    assert GeneratorConfig.from_mapping({"n_chunks": 3}).n_chunks == 3
    with pytest.raises(ConfigError, match="valid keys"):
        GeneratorConfig.from_mapping({"chunks": 3})
    with pytest.raises(ConfigError):
        GeneratorConfig(n_chunks=1)
    with pytest.raises(ConfigError):
        GeneratorConfig(noise_prob=1.5)
    with pytest.raises(ConfigError, match="exceeds"):
        GeneratorConfig(n_chunks=2, facts_per_chunk=1, n_questions=3)
    with pytest.raises(UnknownNameError):
        generate_episode("summarisation", np.random.default_rng(0))


def test_jsonl_loader_good_file(tmp_path):
    path = tmp_path / "eps.jsonl"
    lines = [
        {"chunks": ["Anna keeps the gate."], "questions": ["Who keeps the gate?"], "answers": ["Anna"]},
        {},  # replaced by a blank line below
        {"chunks": ["a b", "c d"], "questions": ["q1?", "q2?"], "answers": [["x", "y"], "z"],
         "metric": "contains", "competency": "mine", "reference_memory": ["x"]},
    ]
    path.write_text(json.dumps(lines[0]) + "\n\n" + json.dumps(lines[2]) + "\n")
    eps = load_episodes(path)
    assert len(eps) == 2 and eps[0].metric == "exact" and eps[0].competency == "custom"
    assert eps[1].answers == (("x", "y"), ("z",)) and eps[1].metric == "contains"
    env = MemoryConstructionEnv(dataset=str(path))
    obs, info = env.reset(seed=0, options={"episode_index": 1})
    assert "a b" in obs and info["competency"] == "mine"


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("{not json", "not valid JSON"),
        ('{"chunks": ["a"], "questions": ["q"]}', "missing"),
        ('{"chunks": ["a"], "questions": ["q"], "answers": ["x", "y"]}', "1 questions but 2 answers"),
        ('{"chunks": [], "questions": ["q"], "answers": ["x"]}', "at least one chunk"),
        ('{"chunks": ["a"], "questions": ["q"], "answers": ["x"], "metric": "f1"}', "metric"),
        ('{"chunks": ["a"], "questions": ["q"], "answers": ["x"], "extra": 1}', "unknown episode key"),
        ('{"chunks": ["a"], "questions": ["q"], "answers": [3]}', "answers[0]"),
        ('["a"]', "must be a JSON object"),
    ],
)
def test_jsonl_loader_bad_lines_name_the_line(tmp_path, bad, reason):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"chunks": ["a"], "questions": ["q"], "answers": ["x"]})
    path.write_text(good + "\n" + bad + "\n")
    with pytest.raises(ConfigError, match=f"bad.jsonl:2: .*{reason.replace('[', '.').replace(']', '.')}"):
        load_episodes(path)


def test_jsonl_loader_empty_or_missing(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ConfigError, match="no episodes"):
        load_episodes(empty)
    with pytest.raises(ConfigError, match="cannot read"):
        load_episodes(tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------- env


def test_registered_and_passes_check_env():
    env = gym.make(ENV_ID)
    assert isinstance(env.unwrapped, MemoryConstructionEnv)
    assert memory_types(ENV_ID) == ("capacity", "rewriting")
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_bad_env_kwargs():
    for kwargs in ({"split": "test"}, {"beta": -1.0}, {"gamma": float("nan")}, {"reward_timing": "mid"},
                   {"sizes": {"n_chunk": 3}}, {"max_item_tokens": 0}, {"render_mode": "human"},
                   {"competencies": []}):
        with pytest.raises(ConfigError):
            MemoryConstructionEnv(**kwargs)
    with pytest.raises(UnknownNameError):
        MemoryConstructionEnv(competencies=["accurate_retrieval", "reading"])
    env = MemoryConstructionEnv()
    with pytest.raises(gym.error.ResetNeeded):
        env.step("")
    with pytest.raises(ConfigError):
        env.reset(seed=0, options={"episode_index": 0})


def _rollout(env, writer, seed):
    obs, info = env.reset(seed=seed)
    writer.reset()
    trace = [(obs, info)]
    while True:
        obs, reward, terminated, truncated, info = env.step(writer(obs))
        trace.append((obs, reward, terminated, truncated, info))
        if terminated:
            return trace


def test_seeded_determinism_and_state_resume():
    a = _rollout(MemoryConstructionEnv(), HeuristicWriter(), seed=11)
    b = _rollout(MemoryConstructionEnv(), HeuristicWriter(), seed=11)
    c = _rollout(MemoryConstructionEnv(), HeuristicWriter(), seed=12)
    assert a == b and a != c
    # Save mid-episode through JSON, restore into a fresh env: replaying the actions the
    # original received gives the same observations, rewards and infos, and the restored
    # RNG gives the same next episode.
    env, writer = MemoryConstructionEnv(), HeuristicWriter()
    obs, _ = env.reset(seed=11)
    for _ in range(3):
        obs, *_ = env.step(writer(obs))
    saved = json.loads(json.dumps(env.get_state()))
    actions, expected = [], []
    while True:
        actions.append(writer(obs))
        obs, reward, terminated, _, info = env.step(actions[-1])
        expected.append((obs, reward, info))
        if terminated:
            break
    fresh = MemoryConstructionEnv()
    fresh.set_state(saved)
    assert [(o, r, i) for o, r, _, _, i in map(fresh.step, actions)] == expected
    assert fresh.reset()[0] == env.reset()[0]


def test_observation_layout_and_limits():
    env = MemoryConstructionEnv(include_instructions=True, obs_max_length=2500)
    obs, _ = env.reset(seed=3)
    assert obs.startswith("You are building a memory") and '<new_chunk index="1/6">' in obs
    obs, *_ = env.step(call("memory_update", memory_type="core", new_content="x " * 600)
                       + call("memory_delete", memory_type="semantic", memory_id="none"))
    assert len(obs) <= 2500 and env.observation_space.contains(obs)
    assert '<new_chunk index="2/6">' in obs and "[... cut to fit the observation ...]" in obs
    env2 = MemoryConstructionEnv()
    env2.reset(seed=3)
    obs2, *_ = env2.step(call("memory_delete", memory_type="semantic", memory_id="none"))
    assert "<last_tool_results>\n1. memory_delete: error: memory_delete: no semantic memory with id 'none'" in obs2
    weird = Episode(chunks=("Grüße — 東京 ☃",), questions=("q?",), answers=(("x",),))
    obs3, _ = env2.reset(options={"episode": weird})
    assert "Grüße — ?? ?" in obs3 and env2.observation_space.contains(obs3)
    assert all(c in CHARSET for c in obs3)


def test_render_modes():
    env = MemoryConstructionEnv(render_mode="rgb_array", sizes={"n_chunks": 2, "n_questions": 1})
    env.reset(seed=0)
    first = env.render()
    assert first.shape == (540, 960, 3) and first.dtype == np.uint8
    env.step(StoreEverything()(env._observe()))
    env.step("")
    last = env.render()
    assert last.shape == first.shape and not np.array_equal(first, last)
    ansi = MemoryConstructionEnv(render_mode="ansi")
    obs, _ = ansi.reset(seed=0)
    assert ansi.render() == obs


def test_writers_run_through_make_writer():
    assert isinstance(make_writer("store_nothing"), StoreNothing)
    with pytest.raises(UnknownNameError):
        make_writer("oracle")
    env = MemoryConstructionEnv(competencies=["long_range_understanding"])
    info = run_episode(env, make_writer("heuristic"), seed=4)
    assert info["steps"] == 6 and 0.0 <= info["accuracy"] <= 1.0
    assert env.store.core.startswith("Total crates of")


def test_baseline_ordering_on_heldout_episodes():
    names = ("store_nothing", "store_everything", "heuristic")
    tables = {name: evaluate_writer(name, episodes=48, seed=500) for name in names}
    nothing, everything, heuristic = tables["store_nothing"], tables["store_everything"], tables["heuristic"]
    for competency in COMPETENCIES:
        assert nothing[competency]["episodes"] == 12
        assert heuristic[competency]["accuracy"] > nothing[competency]["accuracy"] == 0.0
        assert nothing[competency]["reward"] == pytest.approx(0.05)  # compression only
        assert everything[competency]["compression"] == pytest.approx(0.0, abs=1e-9)  # pays the whole term
        assert heuristic[competency]["compression"] > 0.5
    assert everything["accurate_retrieval"]["accuracy"] > 0.7  # verbatim is good at retrieval...
    assert everything["long_range_understanding"]["accuracy"] < 0.2  # ...but cannot total
    assert heuristic["conflict_resolution"]["accuracy"] > everything["conflict_resolution"]["accuracy"] + 0.3
    assert heuristic["all"]["reward"] > everything["all"]["reward"] > nothing["all"]["reward"]
    with pytest.raises(ConfigError):
        evaluate_writer("heuristic", episodes=0)
