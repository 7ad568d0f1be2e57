"""Episodes for memory construction: a seeded synthetic generator and a JSONL loader.

An :class:`Episode` is text chunks read one at a time, then questions answered from memory.
The synthetic generator covers the four competencies of MemoryAgentBench (Hu et al. 2025),
which Mem-α evaluates on:

==============================  ==============================================================
competency                      a synthetic episode
==============================  ==============================================================
``accurate_retrieval``          a diary of days; each day states ``facts_per_chunk`` facts
                                ("The passcode of the blue locker is 4821.") among filler about
                                the same places; questions ask some facts ("What is the passcode
                                of the blue locker?"); metric ``exact``.
``test_time_learning``          labelled examples ("Example: harbor tide quite lantern => label
                                2.") whose words come from one vocabulary per label; questions
                                ask the label of new word sets ("Which label fits: tide reef
                                harbor often?"); metric ``exact``.
``long_range_understanding``    a caravan's log; deliveries of goods and stops at towns are
                                spread over the days; questions ask totals ("How many crates of
                                salt were delivered in total?") and the set of towns ("Which
                                towns did the caravan visit?"); metric ``set``.
``conflict_resolution``         like accurate retrieval, but asked facts change later ("Update:
                                the keeper of the red gate is now Vera."); questions ask the
                                latest value; metric ``exact``.
==============================  ==============================================================

Noise that a careful reader resists and a pattern matcher does not (probability
``noise_prob`` per asked fact / good, ``noise_prob / 2`` per labelled example): false
claims in the fact's own words ("A passing clerk wrongly claimed that the passcode of the
blue locker is 1234."), a *rival* caravan's deliveries, and mislabelled examples. With probability ``alt_prob`` a delivery or a stop is told in a
second wording ("3 more crates of salt arrived with the caravan").

Splits: every name-like vocabulary (places, people, towns, goods, password words, label
words) is cut in two; ``split="train"`` draws from one half, ``"heldout"`` from the other,
so held-out episodes share no entity with training episodes. Colours, attributes,
professions and filler words are shared.

Every synthetic episode carries ``reference_memory``: short canonical statements that
answer all its questions (what a perfect writer would keep; handy for SFT warm starts).

JSONL schema (:func:`load_episodes`), one episode per line::

    {"chunks": ["...", "..."], "questions": ["...?"], "answers": ["x" or ["x", "y"]],
     "metric": "exact" | "contains" | "set",          # optional, default "exact"
     "competency": "any name",                          # optional, default "custom"
     "reference_memory": ["..."]}                      # optional

``answers[i]`` is the acceptable answer (or list of acceptable answers) of ``questions[i]``.
Blank lines are skipped; any other problem raises :class:`rlmem.errors.ConfigError` naming
the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from rlmem.errors import ConfigError, UnknownNameError

__all__ = [
    "COMPETENCIES",
    "METRICS",
    "SPLITS",
    "Episode",
    "GeneratorConfig",
    "generate_episode",
    "load_episodes",
    "split_vocabulary",
]

COMPETENCIES = ("accurate_retrieval", "test_time_learning", "long_range_understanding", "conflict_resolution")
METRICS = ("exact", "contains", "set")
SPLITS = ("train", "heldout")


# --------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class Episode:
    """One memory-construction episode (plain data; :meth:`to_dict` is JSON-safe)."""

    chunks: tuple[str, ...]
    """The text the writer reads, one chunk per env step (at least one)."""
    questions: tuple[str, ...]
    """Asked after the last chunk, answered from memory alone."""
    answers: tuple[tuple[str, ...], ...]
    """``answers[i]``: the acceptable answers of ``questions[i]`` (at least one each; a bare
    string or a list is accepted and stored as a tuple)."""
    competency: str = "custom"
    metric: str = "exact"
    """How answers are scored: ``"exact"``, ``"contains"`` or ``"set"`` (:mod:`.answerer`)."""
    reference_memory: tuple[str, ...] = ()
    """Canonical statements that answer every question (synthetic episodes; may be empty)."""

    def __post_init__(self) -> None:
        # Accept lists and a bare string per answer; store tuples (hashable, immutable).
        for name in ("chunks", "questions", "reference_memory"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.answers, (list, tuple)):
            object.__setattr__(self, "answers", tuple(
                (a,) if isinstance(a, str) else tuple(a) if isinstance(a, list) else a for a in self.answers
            ))
        _check_episode_fields(self.chunks, self.questions, self.answers, self.competency, self.metric,
                              self.reference_memory)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunks": list(self.chunks),
            "questions": list(self.questions),
            "answers": [list(a) for a in self.answers],
            "competency": self.competency,
            "metric": self.metric,
            "reference_memory": list(self.reference_memory),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Episode:
        """Build from the JSONL schema (answers may be strings or lists of strings); bad
        input raises :class:`rlmem.errors.ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"an episode must be a JSON object, got {type(data).__name__}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ConfigError(f"unknown episode key(s) {unknown}; valid keys: {valid}")
        missing = [k for k in ("chunks", "questions", "answers") if k not in data]
        if missing:
            raise ConfigError(f"episode is missing {missing}")
        for key in ("chunks", "questions", "answers", "reference_memory"):
            if key in data and not isinstance(data[key], list):
                raise ConfigError(f"episode {key!r} must be a list, got {type(data[key]).__name__}")
        return cls(
            chunks=tuple(data["chunks"]),
            questions=tuple(data["questions"]),
            answers=tuple(data["answers"]),
            competency=data.get("competency", "custom"),
            metric=data.get("metric", "exact"),
            reference_memory=tuple(data.get("reference_memory", ())),
        )


def _check_episode_fields(chunks, questions, answers, competency, metric, reference_memory) -> None:
    def strings(seq, name: str, allow_empty_items: bool = False) -> None:
        for i, s in enumerate(seq):
            if not isinstance(s, str):
                raise ConfigError(f"episode {name}[{i}] must be a string, got {type(s).__name__}")
            if not allow_empty_items and not s.strip():
                raise ConfigError(f"episode {name}[{i}] is empty")

    if not chunks:
        raise ConfigError("episode needs at least one chunk")
    strings(chunks, "chunks")
    if not questions:
        raise ConfigError("episode needs at least one question")
    strings(questions, "questions")
    if len(answers) != len(questions):
        raise ConfigError(f"episode has {len(questions)} questions but {len(answers)} answers")
    for i, acceptable in enumerate(answers):
        if not isinstance(acceptable, tuple) or not acceptable:
            raise ConfigError(f"episode answers[{i}] must be a string or a non-empty list of strings")
        strings(acceptable, f"answers[{i}]")
    if not isinstance(competency, str) or not competency:
        raise ConfigError(f"episode competency must be a non-empty string, got {competency!r}")
    if metric not in METRICS:
        raise ConfigError(f"episode metric must be one of {METRICS}, got {metric!r}")
    strings(reference_memory, "reference_memory")


def load_episodes(path: str | Path) -> list[Episode]:
    """Episodes of a JSONL file (schema in the module docstring).

    Raises :class:`rlmem.errors.ConfigError` (``"<path>:<line>: <reason>"``) for a missing
    file, a line that is not JSON, a line that breaks the schema, or a file with no episode.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read episodes file {path}: {e}") from None
    episodes = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        try:
            episodes.append(Episode.from_dict(data))
        except ConfigError as e:
            raise ConfigError(f"{path}:{lineno}: {e}") from None
    if not episodes:
        raise ConfigError(f"{path}: no episodes (expected one JSON object per line)")
    return episodes


# --------------------------------------------------------------------------- generator config


@dataclass(frozen=True)
class GeneratorConfig:
    """Sizes and noise of synthetic episodes (the env's ``sizes`` kwarg)."""

    n_chunks: int = 6
    """Chunks per episode (env steps). At least 2 (conflict resolution needs a later chunk)."""
    n_questions: int = 4
    """Questions per episode (long-range understanding: one per good, the last about towns)."""
    facts_per_chunk: int = 2
    """Facts stated per chunk (accurate retrieval; conflict resolution adds one static fact per chunk)."""
    distractors_per_chunk: int = 3
    """Filler sentences per chunk (retrieval, conflict resolution, long-range)."""
    n_labels: int = 4
    """Labels of test-time-learning episodes (2..6)."""
    examples_per_chunk: int = 4
    """Labelled examples per chunk (test-time learning)."""
    noise_prob: float = 0.2
    """Probability, per asked fact or good, of a false claim / rival delivery in its words
    (half of it: per labelled example, of a wrong label)."""
    alt_prob: float = 0.2
    """Probability, per delivery or stop, of the second wording (long-range understanding)."""

    def __post_init__(self) -> None:
        def integer(name: str, low: int, high: int | None = None) -> None:
            v = getattr(self, name)
            bad_type = not isinstance(v, (int, np.integer)) or isinstance(v, bool)
            if bad_type or v < low or (high is not None and v > high):
                bound = f">= {low}" if high is None else f"in [{low}, {high}]"
                raise ConfigError(f"sizes: {name} must be an integer {bound}, got {v!r}")
            object.__setattr__(self, name, int(v))

        integer("n_chunks", 2, 64)
        integer("n_questions", 1, 9)
        integer("facts_per_chunk", 1, 8)
        integer("distractors_per_chunk", 0, 16)
        integer("n_labels", 2, 6)
        integer("examples_per_chunk", 1, 16)
        for name in ("noise_prob", "alt_prob"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"sizes: {name} must be a probability in [0, 1], got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.n_questions > self.n_chunks * self.facts_per_chunk:
            raise ConfigError(
                f"sizes: n_questions ({self.n_questions}) exceeds the facts of an episode "
                f"(n_chunks * facts_per_chunk = {self.n_chunks * self.facts_per_chunk})"
            )

    @classmethod
    def from_mapping(cls, sizes: dict[str, Any] | None) -> GeneratorConfig:
        """From a dict of field values; unknown keys raise a ConfigError naming the valid ones."""
        if sizes is None:
            return cls()
        if isinstance(sizes, GeneratorConfig):
            return sizes
        if not isinstance(sizes, dict):
            raise ConfigError(f"sizes must be a dict, got {type(sizes).__name__}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(sizes) - set(valid))
        if unknown:
            raise ConfigError(f"sizes: unknown key(s) {unknown}; valid keys: {valid}")
        return cls(**sizes)


# --------------------------------------------------------------------------- vocabulary

_COLOURS = "red blue green amber violet silver golden black white crimson teal ochre".split()
_ATTRIBUTES = ("passcode", "keeper", "password", "capacity")
_PROFESSIONS = "baker sailor clerk miller weaver smith scribe courier potter carter".split()
_FILLERS = "quite really again often perhaps usually somewhat rather seemingly mostly".split()

# Split vocabularies: (train half, held-out half). No word appears in two lists.
_SPLIT_VOCAB: dict[str, tuple[list[str], list[str]]] = {
    "places": (
        "locker vault gate tower barge kiln lantern ledger cellar orchard "
        "bridge furnace archive beacon mill wagon chapel harbor quarry garden".split(),
        "cabinet silo pier forge granary lighthouse greenhouse observatory workshop stable "
        "monastery aqueduct brewery tannery foundry library windmill boathouse armory pavilion".split(),
    ),
    "people": (
        "Anna Boris Clara Dmitri Elena Farid Greta Hugo Ines Jonas Kira Luca Mara Nils Olga Pavel".split(),
        "Quentin Rosa Sven Tara Umar Vera Willem Xenia Yusuf Zora Aldo Bettina Cosmo Dalia Emil Fiona".split(),
    ),
    "passwords": (
        "heron falcon cedar marble copper thistle ember willow sparrow granite".split(),
        "otter maple cobalt juniper raven basalt birch hazel lynx quartz".split(),
    ),
    "towns": (
        "Avel Brin Corr Dunmere Esk Falk Garrow Hale Istra Jessel".split(),
        "Ilsby Jorvik Kell Lorn Mora Nesk Orrin Pell Quill Rhoss".split(),
    ),
    "goods": (
        "salt wool grain timber flax hides tallow pitch".split(),
        "spice cotton wine barley honey resin slate linen".split(),
    ),
    "keywords": (
        "harbor_ tide reef anchor mist gull oar sail lagoon pebble "
        "meadow clover hive pollen orchard_ blossom thorn fern "
        "anvil bellows ingot rivet hammer tongs "
        "lantern_ candle wick ember_ soot hearth "
        "comet orbit nebula crater eclipse zenith".split(),
        "dune oasis mirage camel scorpion cactus "
        "glacier fjord iceberg tundra sleet frost "
        "violin cello sonata chord tempo melody "
        "loom spindle thread bobbin needle quilt "
        "pixel circuit diode sensor cable socket "
        "saddle stirrup bridle mane hoof gallop".split(),
    ),
}
# Label words must not collide with place names of the same split (a place "harbor" and a
# label word "harbor" would blur two competencies); the trailing underscore marks three
# such words, which are replaced by distinct ones here.
_SPLIT_VOCAB["keywords"] = (
    [w if not w.endswith("_") else {"harbor_": "dock", "orchard_": "petal", "lantern_": "flame", "ember_": "spark"}[w]
     for w in _SPLIT_VOCAB["keywords"][0]],
    _SPLIT_VOCAB["keywords"][1],
)


def split_vocabulary(split: str) -> dict[str, list[str]]:
    """The name-like vocabularies of one split (``"train"`` or ``"heldout"``): ``places``,
    ``people``, ``passwords``, ``towns``, ``goods``, ``keywords``."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    k = SPLITS.index(split)
    return {name: list(halves[k]) for name, halves in _SPLIT_VOCAB.items()}


# --------------------------------------------------------------------------- generator


class _Draw:
    """Readable draws from a numpy Generator (all randomness of an episode goes through it)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def sample(self, seq, k: int) -> list:
        return [seq[int(i)] for i in self.rng.choice(len(seq), size=k, replace=False)]

    def shuffled(self, seq) -> list:
        return [seq[int(i)] for i in self.rng.permutation(len(seq))]

    def coin(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def integer(self, low: int, high: int) -> int:
        """Uniform in [low, high]."""
        return int(self.rng.integers(low, high + 1))


def _value(d: _Draw, attribute: str, vocab: dict[str, list[str]], avoid: set[str]) -> str:
    while True:
        if attribute == "passcode":
            v = str(d.integer(1000, 9999))
        elif attribute == "keeper":
            v = d.pick(vocab["people"])
        elif attribute == "password":
            v = d.pick(vocab["passwords"])
        else:  # capacity
            v = str(d.integer(10, 99))
        if v not in avoid:
            return v


def _fact(attribute: str, entity: str, value: str) -> str:
    return f"The {attribute} of the {entity} is {value}."


def _question(attribute: str, entity: str) -> str:
    return f"What is the {attribute} of the {entity}?"


def _false_claim(d: _Draw, attribute: str, entity: str, value: str) -> str:
    who = d.pick(_PROFESSIONS)
    return d.pick([
        f"A passing {who} wrongly claimed that the {attribute} of the {entity} is {value}.",
        f"An old rumour, long disproved, said the {attribute} of the {entity} is {value}.",
    ])


def _filler(d: _Draw, entities: list[str], vocab: dict[str, list[str]]) -> str:
    entity = d.pick(entities)
    place = entity.split()[-1]
    return d.pick([
        f"The {entity} was quiet for most of the afternoon.",
        f"A {d.pick(_PROFESSIONS)} from {d.pick(vocab['towns'])} walked past the {entity}.",
        f"Rain fell on the {place} until the evening bells.",
        f"{d.pick(vocab['people'])} sketched the {entity} from across the square.",
        f"Nobody remembered who had last repaired the {place}.",
        f"The {d.pick(_PROFESSIONS)} said the {entity} needed fresh paint.",
    ])


def _add_fillers(sentences: list[str], draw, n: int) -> None:
    """Append ``n`` filler sentences from ``draw()``, redrawing (a few times) any that the
    chunk already holds, so a chunk rarely repeats itself."""
    for _ in range(n):
        for _attempt in range(4):
            new = draw()
            if new not in sentences:
                break
        sentences.append(new)


def _entities(d: _Draw, vocab: dict[str, list[str]], n: int) -> list[str]:
    pairs = [f"{c} {p}" for c in _COLOURS for p in vocab["places"]]
    return d.sample(pairs, n)


def _diary(d: _Draw, sentences: list[list[str]]) -> tuple[str, ...]:
    """Chunk k = "Day k+1." followed by its sentences in random order."""
    return tuple(" ".join([f"Day {k + 1}."] + d.shuffled(s)) for k, s in enumerate(sentences))


def _accurate_retrieval(d: _Draw, vocab, cfg: GeneratorConfig) -> Episode:
    n_facts = cfg.n_chunks * cfg.facts_per_chunk
    entities = _entities(d, vocab, n_facts)
    facts = [(d.pick(_ATTRIBUTES), e) for e in entities]
    values = [_value(d, a, vocab, set()) for a, _ in facts]
    sentences: list[list[str]] = [[] for _ in range(cfg.n_chunks)]
    for i, order in enumerate(d.shuffled(list(range(n_facts)))):
        sentences[i // cfg.facts_per_chunk].append(_fact(*facts[order], values[order]))
    asked = d.sample(list(range(n_facts)), cfg.n_questions)
    for i in asked:
        if d.coin(cfg.noise_prob):
            wrong = _value(d, facts[i][0], vocab, {values[i]})
            sentences[d.integer(0, cfg.n_chunks - 1)].append(_false_claim(d, *facts[i], wrong))
    for s in sentences:
        _add_fillers(s, lambda: _filler(d, entities, vocab), cfg.distractors_per_chunk)
    return Episode(
        chunks=_diary(d, sentences),
        questions=tuple(_question(*facts[i]) for i in asked),
        answers=tuple((values[i],) for i in asked),
        competency="accurate_retrieval",
        metric="exact",
        reference_memory=tuple(_fact(*facts[i], values[i]) for i in sorted(asked)),
    )


def _conflict_resolution(d: _Draw, vocab, cfg: GeneratorConfig) -> Episode:
    n_static = cfg.n_chunks
    entities = _entities(d, vocab, cfg.n_questions + n_static)
    keys = [(d.pick(_ATTRIBUTES), e) for e in entities]
    sentences: list[list[str]] = [[] for _ in range(cfg.n_chunks)]
    finals = []
    for key in keys[: cfg.n_questions]:
        first = d.integer(0, cfg.n_chunks - 2)
        later = list(range(first + 1, cfg.n_chunks))
        n_updates = min(len(later), d.integer(1, 2))
        when = [first] + sorted(d.sample(later, n_updates))
        values: list[str] = []
        for v in range(len(when)):
            values.append(_value(d, key[0], vocab, set(values)))
        sentences[when[0]].append(_fact(*key, values[0]))
        for k, v in zip(when[1:], values[1:]):
            sentences[k].append(f"Update: the {key[0]} of the {key[1]} is now {v}.")
        if d.coin(cfg.noise_prob):
            wrong = _value(d, key[0], vocab, set(values))
            sentences[d.integer(0, cfg.n_chunks - 1)].append(_false_claim(d, *key, wrong))
        finals.append(values[-1])
    for k, key in enumerate(keys[cfg.n_questions:]):  # one fact that never changes per chunk
        sentences[k].append(_fact(*key, _value(d, key[0], vocab, set())))
    for s in sentences:
        _add_fillers(s, lambda: _filler(d, entities, vocab), cfg.distractors_per_chunk)
    asked = keys[: cfg.n_questions]
    return Episode(
        chunks=_diary(d, sentences),
        questions=tuple(_question(*k) for k in asked),
        answers=tuple((v,) for v in finals),
        competency="conflict_resolution",
        metric="exact",
        reference_memory=tuple(_fact(*k, v) for k, v in zip(asked, finals)),
    )


_WORDS_PER_LABEL = 6
_KEYWORDS_PER_EXAMPLE = 3


def _test_time_learning(d: _Draw, vocab, cfg: GeneratorConfig) -> Episode:
    words = d.sample(vocab["keywords"], cfg.n_labels * _WORDS_PER_LABEL)
    label_words = [words[k * _WORDS_PER_LABEL:(k + 1) * _WORDS_PER_LABEL] for k in range(cfg.n_labels)]

    def sample_input(label: int) -> str:
        ws = d.sample(label_words[label], _KEYWORDS_PER_EXAMPLE) + [d.pick(_FILLERS)]
        return " ".join(d.shuffled(ws))

    n_examples = cfg.n_chunks * cfg.examples_per_chunk
    # Every label is shown (round robin over a shuffled label order), then labels at random.
    order = d.shuffled(list(range(cfg.n_labels)))
    labels = [order[i] if i < cfg.n_labels else d.integer(0, cfg.n_labels - 1) for i in range(n_examples)]
    labels = d.shuffled(labels)
    examples = []
    for k in labels:
        shown = k  # the words come from label k; with probability noise_prob / 2 the label shown is wrong
        if d.coin(cfg.noise_prob / 2):
            shown = d.pick([j for j in range(cfg.n_labels) if j != k])
        examples.append(f"Example: {sample_input(k)} => label {shown}.")
    chunks = tuple(
        "\n".join(examples[c * cfg.examples_per_chunk:(c + 1) * cfg.examples_per_chunk]) for c in range(cfg.n_chunks)
    )
    test = [d.integer(0, cfg.n_labels - 1) for _ in range(cfg.n_questions)]
    return Episode(
        chunks=chunks,
        questions=tuple(f"Which label fits: {sample_input(k)}?" for k in test),
        answers=tuple((str(k),) for k in test),
        competency="test_time_learning",
        metric="exact",
        reference_memory=tuple(f"Label {k}: {' '.join(label_words[k])}." for k in range(cfg.n_labels)),
    )


def _long_range_understanding(d: _Draw, vocab, cfg: GeneratorConfig) -> Episode:
    n_goods = max(1, cfg.n_questions - 1)
    goods = d.sample(vocab["goods"], n_goods)
    towns = vocab["towns"]
    sentences: list[list[str]] = [[] for _ in range(cfg.n_chunks)]
    totals = []
    for good in goods:
        when = sorted(d.sample(list(range(cfg.n_chunks)), d.integer(2, min(4, cfg.n_chunks))))
        amounts = [d.integer(2, 9) for _ in when]  # >= 2: "crates" stays plural
        for day, n in zip(when, amounts):
            if d.coin(cfg.alt_prob):
                sentences[day].append(f"On day {day + 1}, {n} more crates of {good} arrived with the caravan.")
            else:
                sentences[day].append(f"On day {day + 1}, the caravan delivered {n} crates of {good}.")
        if d.coin(cfg.noise_prob):
            day = d.integer(0, cfg.n_chunks - 1)
            sentences[day].append(f"A rival caravan delivered {d.integer(2, 9)} crates of {good} to {d.pick(towns)}.")
        totals.append(sum(amounts))
    stops = d.integer(2, min(4, cfg.n_chunks))
    visited = d.sample(towns, stops)
    when = sorted(d.sample(list(range(cfg.n_chunks)), stops))
    for day, town in zip(when, visited):
        if d.coin(cfg.alt_prob):
            sentences[day].append(f"On day {day + 1}, the caravan camped outside {town}.")
        else:
            sentences[day].append(f"On day {day + 1}, the caravan visited {town}.")
    fillers = [
        lambda: "The caravan's mules rested by the road.",
        lambda: f"Merchants in {d.pick(towns)} argued about the price of {d.pick(vocab['goods'])}.",
        lambda: f"{d.pick(vocab['people'])} counted the empty crates twice.",
        lambda: f"A storm slowed the caravan for an hour near {d.pick(towns)}.",
        lambda: f"The {d.pick(_PROFESSIONS)} mended a broken wheel.",
    ]
    for s in sentences:
        _add_fillers(s, lambda: d.pick(fillers)(), cfg.distractors_per_chunk)
    questions = [f"How many crates of {g} were delivered in total?" for g in goods]
    answers = [(str(t),) for t in totals]
    reference = [f"Total crates of {g} delivered: {t}." for g, t in zip(goods, totals)]
    if cfg.n_questions > 1:
        in_order = visited  # already in visiting order: visited[i] is the stop on day when[i]
        questions.append("Which towns did the caravan visit?")
        answers.append((", ".join(in_order),))
        reference.append(f"Towns the caravan visited: {', '.join(in_order)}.")
    return Episode(
        chunks=_diary(d, sentences),
        questions=tuple(questions),
        answers=tuple(answers),
        competency="long_range_understanding",
        metric="set",
        reference_memory=tuple(reference),
    )


_GENERATORS = {
    "accurate_retrieval": _accurate_retrieval,
    "test_time_learning": _test_time_learning,
    "long_range_understanding": _long_range_understanding,
    "conflict_resolution": _conflict_resolution,
}


def check_competencies(competencies: Any) -> tuple[str, ...]:
    """Validate a competency name or a sequence of names; returns a tuple (order kept, no repeats)."""
    if isinstance(competencies, str):
        competencies = (competencies,)
    try:
        names = tuple(dict.fromkeys(competencies))
    except TypeError:
        raise ConfigError(f"competencies must be a name or a list of names, got {competencies!r}") from None
    if not names:
        raise ConfigError(f"competencies must not be empty; choose from {COMPETENCIES}")
    for name in names:
        if name not in _GENERATORS:
            raise UnknownNameError(f"unknown competency {name!r}; competencies: {', '.join(COMPETENCIES)}")
    return names


def generate_episode(
    competency: str, rng: np.random.Generator, split: str = "train", config: GeneratorConfig | None = None
) -> Episode:
    """A synthetic episode of ``competency`` drawn with ``rng`` from ``split``'s vocabulary.

    Deterministic: the same generator state gives the same episode.
    """
    check_competencies(competency)
    vocab = split_vocabulary(split)
    return _GENERATORS[competency](_Draw(rng), vocab, config or GeneratorConfig())
