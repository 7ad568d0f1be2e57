"""``gtrxl``: the Gated Transformer-XL memory (Parisotto et al. 2019, "Stabilizing
Transformers for Reinforcement Learning"), with the sliding-window episode memory of
Memory Gym's TrXL-PPO (Pleines et al.; MarcoMeter/episodic-transformer-memory-ppo).

State (batch first, like every rlmem state), a dict:

- ``"memory"`` [B, L, num_layers, H] float32: the *input* of every layer for the last
  ``L = memory_length`` steps, oldest first (slot ``L - 1`` is the latest step). Storing
  layer inputs rather than keys/values is what Transformer-XL and TrXL-PPO do: keys and
  values are recomputed from them with the current parameters.
- ``"valid"`` [B, L] bool: which slots hold steps of the env's current episode. Slots of
  older episodes (and of the empty initial window) are invalid and hold zeros.

No positions are stored: the window shifts by exactly one slot per step, so a slot's
distance to the next step is implied by its index.

One call over a chunk of ``T`` steps is one batched pass per layer, no loop over time:
the window and the chunk are concatenated to ``L + T`` key positions, and a [B, T, L + T]
mask lets chunk step ``t`` attend to key ``s`` only if

- ``s`` is ``t`` itself or one of the ``L`` steps before it (causal, window length), and
- ``s`` belongs to ``t``'s episode: episode ids are ``cumsum(start)`` over the chunk
  (valid window slots get id 0, invalid ones -1, which no query has), so where
  ``start[t, b]`` is true nothing before ``t`` is visible, inside the chunk or in the window.

A step always sees itself, so no attention row is empty. The new window is the last ``L``
of the ``L + T`` layer inputs. Masked keys get probability exactly 0, so one call equals
``T`` one-step calls (and any chunking) up to float rounding, gradients included.

Block (identity-map reordering, GRU-type gates in place of both residuals)::

    y = g1(e, relu(RelMHA(LN1([memory; e]))))     # e: this layer's input for the chunk
    e' = g2(y, relu(FF(LN2(y))))                  # e': the next layer's input
    g(x, y): r = s(W_r y + U_r x); z = s(W_z y + U_z x - b_g)
             h = tanh(W_g y + U_g (r * x));  g = (1 - z) * x + z * h

With a large gate bias ``b_g`` the gates start near the identity (z ~ 0), so the memory
first passes its input projection through, the property Parisotto et al. credit for
stable early RL training. The output is the last block's output, [T, B, H] (no final
LayerNorm: a gate is a convex mix of its input and a tanh, so the stream keeps the scale
of the input projection).

Positions: **sinusoidal relative positions** of Transformer-XL (Dai et al. 2019), the
encoding GTrXL uses. The score of query ``t`` for key ``s`` is
``((q_t + u) . k_s + (q_t + v) . W_R R[t - s]) / sqrt(d_head)``, where ``R[d]`` is the
sinusoid of the distance ``d = t - s`` in 0..L, ``W_R`` a per-layer projection and ``u``,
``v`` per-layer, per-head biases. Distances, unlike episode step counts, are the same in
the window and in the chunk, so positions are aligned to the window by construction.
(TrXL-PPO adds absolute positions indexed by the window instead; Shchendrigin et al. use
learned ones.)

Gradients and the stored memories: Transformer-XL stops the gradient at the memory of
previous segments. Here a "segment" is whatever the caller runs in one training pass:
``forward`` keeps the graph of the state it returns (like ``gru``/``lstm``), so one call
and a step loop agree in their gradients, and the caller that carries the state across
segments detaches it (:func:`rlmem.memory.detach_state`). PPO does exactly that: the
window entering each replayed chunk is the one stored during the ``no_grad`` rollout, so
stored memories are always detached and gradients flow within the chunk only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlmem.errors import ConfigError
from rlmem.memory.base import Memory, State, register


def sinusoid(length: int, dim: int) -> Tensor:
    """Transformer sinusoids of the distances 0..length-1: [length, dim] float32."""
    d = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    inv_freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    angles = d * inv_freq                                   # [length, ceil(dim / 2)]
    return torch.cat([angles.sin(), angles.cos()], dim=1)[:, :dim]


class GRUGate(nn.Module):
    """GTrXL's gate ``g(x, y)`` in place of a residual connection ``x + y``.

    ``x`` is the residual stream, ``y`` the submodule's output, both [..., H]. The only
    bias is ``gate_bias`` (b_g), subtracted in the update gate ``z``.
    """

    def __init__(self, size: int, gate_bias: float):
        super().__init__()
        self.size = size
        self.w = nn.Linear(size, 3 * size, bias=False)       # W_r, W_z, W_g on y
        self.u_rz = nn.Linear(size, 2 * size, bias=False)    # U_r, U_z on x
        self.u_g = nn.Linear(size, size, bias=False)         # U_g on r * x
        self.gate_bias = gate_bias
        # b_g is a fixed offset, not a parameter: [0] * size for r, [b_g] * size for z.
        offset = torch.cat([torch.zeros(size), torch.full((size,), float(gate_bias))])
        self.register_buffer("offset", offset, persistent=False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        wy = self.w(y)
        r, z = torch.sigmoid(wy[..., : 2 * self.size] + self.u_rz(x) - self.offset).chunk(2, dim=-1)
        h = torch.tanh(wy[..., 2 * self.size :] + self.u_g(r * x))
        return torch.lerp(x, h, z)                           # (1 - z) * x + z * h


class RelMultiHeadAttention(nn.Module):
    """Multi-head attention with Transformer-XL relative positions over a key window.

    Queries are the last ``T`` of the ``S = L + T`` key positions; ``pos`` [T, S] long
    holds the distance index (clamped to 0..L) of each (query, key) pair and ``allowed``
    [B, T, S] bool says which pairs may attend (every row has at least one).
    """

    def __init__(self, size: int, num_heads: int, rel: Tensor):
        super().__init__()
        self.num_heads, self.d_head = num_heads, size // num_heads
        self.q = nn.Linear(size, size, bias=False)           # queries: chunk steps only
        self.kv = nn.Linear(size, 2 * size, bias=False)      # keys, values: window + chunk
        self.w_r = nn.Linear(size, size, bias=False)         # W_R: sinusoid -> per-head position key
        self.u = nn.Parameter(torch.zeros(num_heads, self.d_head))  # content bias
        self.v = nn.Parameter(torch.zeros(num_heads, self.d_head))  # position bias
        self.out = nn.Linear(size, size)
        self.register_buffer("rel", rel, persistent=False)   # [L + 1, H] sinusoids of distances

    def forward(self, a: Tensor, pos: Tensor, allowed: Tensor) -> Tensor:
        """``a`` [B, S, H] normalised layer inputs (window, then chunk) -> [B, T, H]."""
        B, S, H = a.shape
        T = pos.shape[0]
        nh, dh = self.num_heads, self.d_head
        q = self.q(a[:, S - T :]).view(B, T, nh, dh).transpose(1, 2)          # [B, nh, T, dh]
        scale = 1.0 / math.sqrt(dh)
        k, v = self.kv(a).view(B, S, 2, nh, dh).permute(2, 0, 3, 1, 4)        # each [B, nh, S, dh]
        r = self.w_r(self.rel).view(-1, nh, dh).transpose(0, 1)               # [nh, L + 1, dh]
        # The 1/sqrt(d_head) scale goes on the (small) queries, not on the [T, S] scores.
        content = ((q + self.u[:, None]) * scale) @ k.transpose(-1, -2)       # [B, nh, T, S]
        by_dist = ((q + self.v[:, None]) * scale) @ r.transpose(-1, -2)       # [B, nh, T, L + 1]
        scores = content + by_dist.gather(-1, pos.expand(B, nh, T, S))        # [B, nh, T, S]
        # -inf, not a large negative number: a masked key then gets probability exactly 0
        # (and gradient exactly 0), which the episode-isolation tests demand.
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        out = scores.softmax(-1) @ v                                           # [B, nh, T, dh]
        return self.out(out.transpose(1, 2).reshape(B, T, H))


class GTrXLBlock(nn.Module):
    """One GTrXL layer: pre-LN relative attention and pre-LN feed-forward, each followed by
    ReLU and a GRU gate in place of the residual (identity-map reordering)."""

    def __init__(self, size: int, num_heads: int, ff_mult: int, gate_bias: float, rel: Tensor):
        super().__init__()
        self.norm_attn = nn.LayerNorm(size)
        self.attn = RelMultiHeadAttention(size, num_heads, rel)
        self.gate_attn = GRUGate(size, gate_bias)
        self.norm_ff = nn.LayerNorm(size)
        self.ff = nn.Sequential(nn.Linear(size, ff_mult * size), nn.ReLU(), nn.Linear(ff_mult * size, size))
        self.gate_ff = GRUGate(size, gate_bias)

    def forward(self, mem: Tensor, e: Tensor, pos: Tensor, allowed: Tensor) -> Tensor:
        """``mem`` [B, L, H] stored inputs of this layer, ``e`` [B, T, H] its chunk inputs."""
        a = self.norm_attn(torch.cat([mem, e], dim=1))       # the window is normalised too
        y = self.gate_attn(e, F.relu(self.attn(a, pos, allowed)))
        return self.gate_ff(y, F.relu(self.ff(self.norm_ff(y))))


@register("gtrxl")
class GTrXL(Memory):
    """Gated Transformer-XL over a sliding window of the last ``memory_length`` steps.

    State: dict ``memory`` [B, memory_length, num_layers, hidden_size] float32 and
    ``valid`` [B, memory_length] bool (module doc). Output [T, B, hidden_size] float32.

    Args:
        in_dim: features per step (projected linearly to ``hidden_size``).
        hidden_size: model width and ``out_dim``; divisible by ``num_heads``.
        num_layers: GTrXL blocks.
        num_heads: attention heads per block.
        memory_length: past steps a step can attend to in each layer (the window ``L``);
            a step attends to itself and up to ``L`` earlier steps of its episode, so the
            receptive field of the stack is ``num_layers * L`` steps.
        gate_bias: b_g of every gate; larger starts closer to the identity.
        ff_mult: width of the feed-forward hidden layer, in multiples of ``hidden_size``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        memory_length: int = 64,
        gate_bias: float = 2.0,
        ff_mult: int = 4,
    ):
        super().__init__()
        ints = dict(in_dim=in_dim, hidden_size=hidden_size, num_layers=num_layers,
                    num_heads=num_heads, memory_length=memory_length, ff_mult=ff_mult)
        for key, value in ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"gtrxl: {key} must be an integer >= 1, got {value!r}")
        if hidden_size % num_heads:
            raise ConfigError(f"gtrxl: hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        if isinstance(gate_bias, bool) or not isinstance(gate_bias, (int, float)) or not math.isfinite(gate_bias):
            raise ConfigError(f"gtrxl: gate_bias must be a finite number, got {gate_bias!r}")
        self.in_dim, self.out_dim = in_dim, hidden_size
        self.hidden_size, self.num_layers, self.num_heads = hidden_size, num_layers, num_heads
        self.memory_length, self.gate_bias, self.ff_mult = memory_length, float(gate_bias), ff_mult
        self.embed = nn.Linear(in_dim, hidden_size)
        rel = sinusoid(memory_length + 1, hidden_size)      # distances 0..L
        self.blocks = nn.ModuleList(
            GTrXLBlock(hidden_size, num_heads, ff_mult, self.gate_bias, rel) for _ in range(num_layers)
        )

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """An empty window: zeros [batch_size, L, num_layers, H] and ``valid`` all false."""
        w = self.embed.weight
        device = w.device if device is None else device
        L = self.memory_length
        return {
            "memory": torch.zeros(batch_size, L, self.num_layers, self.hidden_size, device=device, dtype=w.dtype),
            "valid": torch.zeros(batch_size, L, dtype=torch.bool, device=device),
        }

    def forward(self, x: Tensor, state: State, start: Tensor) -> tuple[Tensor, State]:
        """Read ``x`` [T, B, in_dim] float32 from ``state``; ``start`` [T, B] bool resets.

        Returns ``y`` [T, B, hidden_size] float32 and the state after step T-1.
        """
        T, B = start.shape
        L = self.memory_length
        memory, valid = state["memory"], state["valid"]
        # Episode ids: chunk step t has the number of starts up to t; valid window slots
        # belong to the episode running at the call's start (id 0), invalid ones to none.
        chunk_id = start.t().long().cumsum(1)                                # [B, T]
        window_id = torch.where(valid, 0, -1)                                # [B, L]
        key_id = torch.cat([window_id, chunk_id], dim=1)                     # [B, L + T]
        # Distance from query t (key position L + t) to key s; visible iff 0 <= d <= L.
        t_idx = torch.arange(T, device=x.device).unsqueeze(1)
        s_idx = torch.arange(L + T, device=x.device).unsqueeze(0)
        dist = L + t_idx - s_idx                                             # [T, L + T]
        in_window = (dist >= 0) & (dist <= L)
        allowed = in_window & (key_id.unsqueeze(1) == chunk_id.unsqueeze(2))  # [B, T, L + T]
        pos = dist.clamp(0, L)

        e = self.embed(x).transpose(0, 1)                                    # [B, T, H]
        inputs = []                                                          # per layer [B, T, H]
        for i, block in enumerate(self.blocks):
            inputs.append(e)
            e = block(memory[:, :, i], e, pos, allowed)

        # The new window: the last L of window + chunk, each layer's inputs.
        new_memory = torch.cat([memory, torch.stack(inputs, dim=2)], dim=1)[:, T:]  # [B, L, layers, H]
        new_valid = key_id[:, T:] == chunk_id[:, -1:]                               # [B, L]
        # Zero what the next episode cannot see, so the state holds nothing of older episodes.
        new_memory = torch.where(new_valid[:, :, None, None], new_memory, 0.0)
        return e.transpose(0, 1), {"memory": new_memory, "valid": new_valid}
