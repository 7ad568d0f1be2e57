"""Retrieval agents that play a task stream with a case bank that outlives episodes.

Four ways to use past cases, all built on :class:`rlmem.memory.casebank.CaseBank`
(cosine metric) and all sharing one rule for turning a retrieved case into a plan:

=============== ==================================================================
``none``        no memory: a random plan for every task (the control)
``similarity``  reuse the single most similar case (cosine >= threshold): passive
                semantic matching, Memento's non-parametric retrieval with K = 1
``two_phase``   MemRL: cosine >= threshold, top ``k1``; rerank by
                ``w_sim z(sim) + w_q clip(z(Q))``, keep the top ``k2``; epsilon-greedy
                among them; after the episode ``Q <- Q + alpha (r - Q)`` on the reused case
``selector``    Memento's parametric selector: a small MLP scores (query, case) pairs
                among the top ``k1`` similar cases; epsilon-greedy among its top ``k2``;
                trained online with binary cross-entropy on whether reusing the case
                solved the task (``selector_target="return"``: on the return instead)
=============== ==================================================================

A case is ``(task features, evidence, q)``. The *evidence* (``int8[L, A]``) is what the
agent knows about each plan step of the task the case was stored for: ``+1`` for the action
known right, ``-1`` for actions known wrong, ``0`` unknown. The shared plan rule
(:func:`propose_plan`): at each step play the action known right if there is one, else a
uniformly random action not known wrong. After the episode (per-step rewards say which
steps were right) the agent stores a new case whose evidence is the reused case's evidence
updated with what this episode showed (:func:`update_evidence`); a new case's Q starts at
the episode's return (MemRL's ``q_init_pos`` / ``q_init_neg``, graded by the fraction of
steps right). Every memory agent stores every episode, retrieves with the same threshold,
and draws its plan randomness from its own generator, so agents with the same seed differ
only in which case they reuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from rlmem.errors import ConfigError, UnknownNameError
from rlmem.memory.casebank import CaseBank

__all__ = [
    "KINDS",
    "CaseAgent",
    "CaseAgentConfig",
    "CaseSelector",
    "NoMemoryAgent",
    "SelectorAgent",
    "SimilarityAgent",
    "TwoPhaseAgent",
    "make_case_agent",
    "propose_plan",
    "update_evidence",
]

KINDS = ("none", "similarity", "two_phase", "selector")


@dataclass(frozen=True)
class CaseAgentConfig:
    """Retrieval hyperparameters (one config for every kind; each reads what it uses)."""

    threshold: float = 0.5
    """Phase A: only cases with cosine >= threshold are candidates (all retrieving agents);
    with no candidate the agent plays a random plan."""
    k1: int = 10
    """Phase A: at most this many most similar candidates (two_phase, selector)."""
    k2: int = 5
    """Phase B: the epsilon-greedy choice is among the best ``k2`` after reranking."""
    w_sim: float = 0.5
    """MemRL rerank weight of z(similarity)."""
    w_q: float = 0.5
    """MemRL rerank weight of z(Q)."""
    z_clip: float = 3.0
    """z(Q) is clipped to [-z_clip, z_clip]."""
    epsilon: float = 0.1
    """Probability of reusing a uniformly random one of the top ``k2`` instead of the best
    (two_phase, selector; similarity-only is greedy)."""
    alpha: float = 0.3
    """MemRL's Q step size: ``Q <- Q + alpha (return - Q)`` on the reused case."""
    capacity: int = 100_000
    """Bank capacity (least recently used cases are evicted beyond it)."""
    selector_hidden: int = 64
    """Hidden width of the selector MLP."""
    selector_lr: float = 1e-3
    """Adam learning rate of the selector."""
    selector_batch: int = 64
    """Examples per selector update (sampled from the most recent ``selector_buffer``)."""
    selector_buffer: int = 4096
    """How many recent (query, case, label) examples the selector trains on."""
    selector_updates: int = 1
    """Selector gradient steps after each episode."""
    selector_target: str = "success"
    """The selector's label for a reuse: ``"success"`` (1 if the task was solved, as in
    Memento) or ``"return"`` (the fraction of steps right, a soft label for the same loss)."""

    def __post_init__(self) -> None:
        for name in ("threshold", "w_sim", "w_q", "z_clip", "epsilon", "alpha", "selector_lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
                raise ConfigError(f"CaseAgentConfig: {name} must be a finite number, got {v!r}")
        if not -1.0 <= float(self.threshold) <= 1.0:
            raise ConfigError(f"CaseAgentConfig: threshold is a cosine, must be in [-1, 1], got {self.threshold}")
        for name in ("k1", "k2", "capacity", "selector_hidden", "selector_batch", "selector_buffer"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"CaseAgentConfig: {name} must be an integer >= 1, got {v!r}")
        if not isinstance(self.selector_updates, int) or self.selector_updates < 0:
            raise ConfigError(
                f"CaseAgentConfig: selector_updates must be an integer >= 0, got {self.selector_updates!r}"
            )
        for name in ("epsilon", "alpha"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ConfigError(f"CaseAgentConfig: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.selector_target not in ("success", "return"):
            raise ConfigError(
                f"CaseAgentConfig: selector_target must be 'success' or 'return', got {self.selector_target!r}"
            )
        if not float(self.z_clip) > 0 or not float(self.selector_lr) > 0:
            raise ConfigError(
                f"CaseAgentConfig: z_clip and selector_lr must be > 0, got {self.z_clip}, {self.selector_lr}"
            )


# --------------------------------------------------------------------------- the shared plan rule


def propose_plan(evidence: np.ndarray | None, u: np.ndarray, n_actions: int) -> np.ndarray:
    """The plan an agent plays, from a reused case's ``evidence`` (``int8[L, A]`` or None).

    Step ``t``: the action known right if the evidence has one, else the
    ``floor(u[t] * n)``-th of the ``n`` actions not known wrong (all actions when there is
    no case, or when the evidence rules every action out). ``u`` is ``float[L]`` in [0, 1):
    one draw per step whether used or not, so agents with the same seed consume the same
    random numbers. Returns ``int64[L]``.
    """
    L = len(u)
    if evidence is None:
        allowed = np.ones((L, n_actions), dtype=bool)
    else:
        known_right = evidence > 0
        allowed = np.where(known_right.any(1, keepdims=True), known_right, evidence == 0)
        allowed[~allowed.any(1)] = True
    counts = allowed.sum(1)
    pick = np.minimum((u * counts).astype(np.int64), counts - 1)
    # The pick-th allowed action is the number of positions whose running count of allowed
    # actions is still <= pick.
    return (allowed.cumsum(1) <= pick[:, None]).sum(1).astype(np.int64)


def update_evidence(parent: np.ndarray | None, plan: np.ndarray, correct: np.ndarray, n_actions: int) -> np.ndarray:
    """Evidence (``int8[L, A]``) of the case stored after playing ``plan`` (``int[L]``) with
    per-step outcomes ``correct`` (``bool[L]``), starting from the reused case's ``parent``.

    A right step becomes ``+1`` at the action played and ``-1`` elsewhere. A wrong step marks
    the action ``-1``; if the parent claimed a right action for that step, the parent's row
    came from a task with another plan, so it is dropped first; a row with every action
    ruled out is dropped too (keeping only this episode's ``-1``).
    """
    L = len(plan)
    ev = np.zeros((L, n_actions), dtype=np.int8) if parent is None else parent.astype(np.int8).copy()
    rows = np.arange(L)
    correct = np.asarray(correct, dtype=bool)
    ev[~correct & (ev > 0).any(1)] = 0
    ev[correct] = -1
    ev[rows, plan] = np.where(correct, 1, -1)
    exhausted = (ev < 0).all(1)
    ev[exhausted] = 0
    ev[rows[exhausted], plan[exhausted]] = -1
    return ev


# --------------------------------------------------------------------------- agents


class CaseAgent:
    """Base of the retrieval agents: one task at a time, ``act`` then ``learn``.

    ``act(features float32[D]) -> plan int64[L]`` picks a case (:meth:`_choose`, the part
    each kind defines) and turns it into a plan; ``learn(correct bool[L]) -> case id``
    gives the kind its feedback (:meth:`_feedback`) and stores the episode as a new case.
    ``parent_id`` is the id of the case reused for the current task (-1: none).
    """

    kind = "base"
    uses_memory = True

    def __init__(
        self, feature_dim: int, plan_length: int, n_actions: int, config: CaseAgentConfig | None = None, seed: int = 0
    ):
        self.config = cfg = config or CaseAgentConfig()
        self.feature_dim, self.plan_length, self.n_actions = int(feature_dim), int(plan_length), int(n_actions)
        # Two generators: the plan draws are the same stream for every kind with the same seed.
        self.plan_rng = np.random.default_rng([seed, 0])
        self.choice_rng = np.random.default_rng([seed, 1])
        self.bank: CaseBank | None = None
        if self.uses_memory:  # payload: the case's evidence, int8[L, A]
            shape = (plan_length, n_actions)
            self.bank = CaseBank(
                feature_dim, cfg.capacity, payload_shape=shape, payload_dtype=torch.int8, metric="cosine"
            )
        self.parent_id = -1
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None

    def act(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32).reshape(-1)
        if features.shape != (self.feature_dim,):
            raise ConfigError(
                f"{type(self).__name__}.act: features must be float[{self.feature_dim}], got {features.shape}"
            )
        self.parent_id = -1
        if self.bank is not None and len(self.bank):
            self.parent_id = self._choose(torch.from_numpy(features)[None])
        parent = self.bank.payloads[self.parent_id].numpy().copy() if self.parent_id >= 0 else None
        plan = propose_plan(parent, self.plan_rng.random(self.plan_length), self.n_actions)
        self._pending = (features, plan, parent)
        return plan

    def learn(self, correct: np.ndarray) -> int:
        if self._pending is None:
            raise ConfigError(f"{type(self).__name__}.learn: call act() first")
        features, plan, parent = self._pending
        self._pending = None
        correct = np.asarray(correct, dtype=bool).reshape(-1)
        if correct.shape != (self.plan_length,):
            raise ConfigError(
                f"{type(self).__name__}.learn: correct must be bool[{self.plan_length}], got {correct.shape}"
            )
        if self.bank is None:
            return -1
        ret = float(correct.mean())
        if self.parent_id >= 0:
            self._feedback(self.parent_id, ret, bool(correct.all()))
        evidence = update_evidence(parent, plan, correct, self.n_actions)
        ids = self.bank.add(torch.from_numpy(features)[None], torch.from_numpy(evidence)[None], q=ret)
        return int(ids[0])

    def _choose(self, query: Tensor) -> int:
        """The id of the case to reuse for ``query`` [1, D] (-1: none). The bank is not empty."""
        raise NotImplementedError

    def _feedback(self, case_id: int, ret: float, success: bool) -> None:
        """What the kind learns from reusing ``case_id``: return in [0, 1] and success."""

    def _epsilon_greedy(self, ranked: np.ndarray) -> int:
        """The first of ``ranked`` ids, or with probability epsilon a uniform one of them."""
        if self.choice_rng.random() < self.config.epsilon:
            return int(ranked[self.choice_rng.integers(len(ranked))])
        return int(ranked[0])


class NoMemoryAgent(CaseAgent):
    """No memory: a random plan for every task."""

    kind = "none"
    uses_memory = False


class SimilarityAgent(CaseAgent):
    """Reuse the most similar case (cosine >= threshold)."""

    kind = "similarity"

    def _choose(self, query: Tensor) -> int:
        sims, ids = self.bank.search(query, 1)
        return int(ids[0, 0]) if float(sims[0, 0]) >= self.config.threshold else -1


class TwoPhaseAgent(CaseAgent):
    """MemRL: similarity filter, z(sim) + z(Q) rerank, epsilon-greedy, Q updated with the return."""

    kind = "two_phase"

    def _choose(self, query: Tensor) -> int:
        c = self.config
        ids, _ = self.bank.retrieve(
            query, threshold=c.threshold, k1=c.k1, k2=c.k2, w_sim=c.w_sim, w_q=c.w_q, z_clip=c.z_clip
        )
        ranked = ids[0][ids[0] >= 0].numpy()
        return self._epsilon_greedy(ranked) if len(ranked) else -1

    def _feedback(self, case_id: int, ret: float, success: bool) -> None:
        self.bank.update_q(torch.tensor([case_id]), torch.tensor([ret]), self.config.alpha)


class CaseSelector(nn.Module):
    """Memento's parametric case selector: ``P(reusing the case solves the query)``.

    Input per (query, case) pair (:meth:`pair_features`): ``[q, k, q * k, cos(q, k), label]``
    with ``q``, ``k`` the unit query and case key (``D`` each) and ``label`` the fraction of
    its own task the case's plan got right (Memento's positive/negative case label, graded):
    ``3 D + 2`` floats. Output: logits ``[K]``. Two layers, ReLU.
    """

    def __init__(self, feature_dim: int, hidden: int, generator: torch.Generator):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * feature_dim + 2, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        for layer in (self.net[0], self.net[2]):  # PyTorch's default init, from our own generator
            bound = layer.in_features ** -0.5
            nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)

    @staticmethod
    def pair_features(query: Tensor, keys: Tensor, labels: Tensor) -> Tensor:
        """``query`` [D], ``keys`` [K, D], ``labels`` [K] -> ``float32[K, 3 D + 2]``."""
        q = query / query.norm().clamp_min(1e-12)
        k = keys / keys.norm(dim=1, keepdim=True).clamp_min(1e-12)
        qk = q * k
        return torch.cat([q.expand_as(k), k, qk, qk.sum(1, keepdim=True), labels[:, None]], 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


class SelectorAgent(CaseAgent):
    """Memento's parametric retrieval: the selector MLP picks among the top-k1 similar cases."""

    kind = "selector"

    def __init__(
        self, feature_dim: int, plan_length: int, n_actions: int, config: CaseAgentConfig | None = None, seed: int = 0
    ):
        super().__init__(feature_dim, plan_length, n_actions, config, seed)
        c = self.config
        self.torch_rng = torch.Generator().manual_seed(int(seed))
        self.selector = CaseSelector(feature_dim, c.selector_hidden, self.torch_rng)
        self.optimizer = torch.optim.Adam(self.selector.parameters(), lr=c.selector_lr)
        # Ring buffer of the most recent training examples: pair features and success labels.
        self.example_x = torch.zeros(c.selector_buffer, 3 * feature_dim + 2)
        self.example_y = torch.zeros(c.selector_buffer)
        self.n_examples = 0
        self._chosen_x: Tensor | None = None

    def _choose(self, query: Tensor) -> int:
        c = self.config
        sims, ids = self.bank.search(query, c.k1)
        ok = (ids[0] >= 0) & (sims[0] >= c.threshold)
        cand = ids[0][ok]
        if not len(cand):
            return -1
        evidence = self.bank.payloads[cand]
        labels = (evidence > 0).any(-1).float().mean(-1)  # fraction of the case's own steps right
        x = CaseSelector.pair_features(query[0], self.bank.keys[cand], labels)
        with torch.no_grad():
            scores = self.selector(x)
        order = torch.argsort(scores, descending=True, stable=True)[: c.k2]  # ties: most similar first
        choice = self._epsilon_greedy(order.numpy())
        self._chosen_x = x[choice]
        return int(cand[choice])

    def _feedback(self, case_id: int, ret: float, success: bool) -> None:
        c = self.config
        slot = self.n_examples % c.selector_buffer
        self.example_x[slot] = self._chosen_x
        self.example_y[slot] = float(success) if c.selector_target == "success" else ret
        self.n_examples += 1
        filled = min(self.n_examples, c.selector_buffer)
        for _ in range(c.selector_updates):
            idx = torch.randint(filled, (min(c.selector_batch, filled),), generator=self.torch_rng)
            logits = self.selector(self.example_x[idx])
            loss = nn.functional.binary_cross_entropy_with_logits(logits, self.example_y[idx])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()


_AGENTS = {cls.kind: cls for cls in (NoMemoryAgent, SimilarityAgent, TwoPhaseAgent, SelectorAgent)}


def make_case_agent(
    kind: str, feature_dim: int, plan_length: int, n_actions: int, config: CaseAgentConfig | None = None, seed: int = 0
) -> CaseAgent:
    """Build a retrieval agent by name (one of :data:`KINDS`)."""
    if kind not in _AGENTS:
        raise UnknownNameError(f"unknown case agent {kind!r}; valid: {', '.join(KINDS)}")
    return _AGENTS[kind](feature_dim, plan_length, n_actions, config, seed)
