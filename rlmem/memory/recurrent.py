"""``gru`` and ``lstm``: recurrent memories with exact episode resets, no step loop.

State (batch first, like every rlmem state): GRU ``h`` [B, num_layers, H]; LSTM a tuple
``(h, c)``, each [B, num_layers, H]; float32, zeros at the start of an episode.

Training replays chunks of T = 128 steps in which episodes start anywhere, often several
times per env. Stepping ``nn.GRU``/``nn.LSTM`` one step at a time in Python (what
sb3-contrib does when a sequence holds a reset) makes the interpreter loop dominate the
update on CPU at the small per-minibatch batches PPO uses, so a chunk goes through one
of these exact paths, each one fused call (path 4: one per layer), no Python loop over time:

1. ``T == 1`` (acting): reset the state where ``start[0]`` with ``torch.where``, then one
   fused cell call per layer (``torch.lstm_cell`` / ``torch.gru_cell``).
2. No start after step 0: reset at t = 0 the same way, one whole-sequence call.
3. Starts inside the chunk: cut every env's chunk into *segments* at its starts. A
   segment begins at t = 0 of every env (continuing the carried state unless ``start[0]``)
   and at every start (from zeros). The S segments are scattered into a padded
   [L_max, S, in_dim] tensor, packed (``pack_padded_sequence``, unsorted), run in one call
   from their own initial states [num_layers, S, H], unpacked and gathered back to
   [T, B, H]. Env b's final state is the final state of its last segment. All indices
   come from a cumsum over the flattened [B, T] segment-begin mask: no loop over envs
   or steps.

3'. On CPU: the same segments padded but not packed, one call of the fused kernel
   (oneDNN's LSTM; for the GRU it avoids the packed kernel's quadratic backward, below),
   plus one small call per distinct start time of the envs' last segments for the exact
   final state (see _forward_padded); training replays discard the final state and skip
   those calls (``replay``). Measured here (T = 64, B = 8, episodes ~25 steps, 1 thread,
   forward+backward): LSTM-128 ~15 ms vs ~27 ms for path 3 and ~5 ms without starts;
   GRU-128 (input 64) 40 ms vs 58 ms for path 3 and 34 ms without starts.

4. Training replays on CPU (``replay``, no final state wanted), where a cost model
   (``_flush_is_cheaper``) says it beats 3': every env's chunk stays one
   row, and a *flush step* is inserted just before each start after t = 0, so row b is
   T + (its starts) steps long; each layer is one fused call over [T + max starts, B], at
   the cost of a reset-free chunk plus a few steps instead of S segments x L_max. The flush
   step's input is a flag in an extra input column whose weights drive the gates that keep
   the past shut: LSTM input, forget and output gates get ``FLUSH`` = -1e4 (sigmoid is
   exactly 0 there, its derivative too), so c and h after the step are exactly 0 and no
   gradient crosses it; GRU reset and update gates get ``FLUSH`` and the candidate's column
   is -b_in, cancelling its input bias, so h = tanh(0) = 0 (b_in's gradient from the flush
   step cancels up to rounding). A lower layer outputs exactly 0 at a flush step, so the
   same flag resets the layers above. Measured here (LSTM-128, T = 64, B = 8, ~25-step
   episodes, 1 thread, forward+backward): 7.5 ms vs 14.8 ms for path 3' and 6.3 ms without
   starts (`python benchmarks/recurrent_paths.py`, README "Training throughput").

On CPU, path 3 is run over blocks of at most ``K = max(8, cpu_block_rows // B)`` steps
(K = T for small batches), threading the state from block to block. Why: PyTorch's CPU
kernel for packed sequences precomputes the input projection of all B*T rows and slices
it once per step; the backward of each slice writes a full-size gradient, so one packed
call costs O(T * B*T) in its backward (pytorch/pytorch#149194). Measured here for an
LSTM-128 at T = 128: one call over B = 64 envs is ~4x slower than blocks of 8 steps, at
B = 128 ~10x. Blocks keep it linear in T, and a block without starts inside takes the
fast whole-sequence path 2. On GPU the whole chunk is one call.

Every path equals a step-by-step loop up to float rounding, and gradients flow to the
inputs, the parameters, and the incoming state of segments that continue it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rlmem.errors import ConfigError
from rlmem.memory.base import Memory, State, register

Parts = tuple[Tensor, ...]  # (h,) or (h, c), each [B, num_layers, H]

#: Path 4's pre-activation for the gates a flush step shuts: sigmoid(FLUSH) is exactly 0 in
#: float32/64 (and its derivative too), whatever the weights add to it.
FLUSH = -1e4


class _Recurrent(Memory):
    """Shared code of ``gru`` and ``lstm``; subclasses name the torch module.

    Internally a state is a tuple of "parts" (``(h,)`` for GRU, ``(h, c)`` for LSTM),
    each [B, num_layers, H]; torch's RNNs want them as [num_layers, B, H].
    """

    rnn_cls: type[nn.RNNBase]
    kind: str      # the registered name, for error messages
    n_parts: int   # 1: h (GRU); 2: (h, c) (LSTM)
    #: On CPU, path 3 runs blocks of max(8, cpu_block_rows // B) steps (module doc).
    cpu_block_rows: int = 512
    #: On CPU, chunks with starts inside take path 3' (padded, fused kernel), not path 3.
    cpu_padded: bool = True
    #: On CPU, training replays with starts inside take path 4 (flush steps) where it is
    #: cheaper than path 3' by the cost model of ``_flush_is_cheaper``.
    cpu_flush: bool = True
    #: That model's fixed cost of one time step, in batch rows (measured here, fused
    #: forward+backward: oneDNN's LSTM ~4, torch's GRU step loop ~64).
    cpu_step_rows: int

    def __init__(self, in_dim: int, hidden_size: int = 128, num_layers: int = 1):
        super().__init__()
        if in_dim < 1 or hidden_size < 1 or num_layers < 1:
            raise ConfigError(
                f"{self.kind}: need in_dim, hidden_size, num_layers >= 1; "
                f"got in_dim={in_dim}, hidden_size={hidden_size}, num_layers={num_layers}"
            )
        self.in_dim = in_dim
        self.out_dim = hidden_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.rnn = self.rnn_cls(in_dim, hidden_size, num_layers)  # time-major

    # -- the public state <-> a tuple of parts
    def _parts(self, state: State) -> Parts:
        return tuple(state) if self.n_parts > 1 else (state,)

    def _state(self, parts: Parts) -> State:
        return tuple(parts) if self.n_parts > 1 else parts[0]

    # -- parts [B, L, H] <-> torch's hidden [L, B, H] (a tensor for GRU, a tuple for LSTM)
    @staticmethod
    def _to_hx(parts: Parts):
        hx = tuple(p.transpose(0, 1).contiguous() for p in parts)
        return hx[0] if len(hx) == 1 else hx

    @staticmethod
    def _from_hx(hx) -> Parts:
        hx = hx if isinstance(hx, tuple) else (hx,)
        return tuple(h.transpose(0, 1).contiguous() for h in hx)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zeros [batch_size, num_layers, hidden_size] (one per part), the parameters' dtype."""
        w = self.rnn.weight_ih_l0
        shape = (batch_size, self.num_layers, self.hidden_size)
        device = w.device if device is None else device
        zeros = (torch.zeros(shape, device=device, dtype=w.dtype) for _ in range(self.n_parts))
        return self._state(tuple(zeros))

    def forward(self, x: Tensor, state: State, start: Tensor) -> tuple[Tensor, State]:
        """Read ``x`` [T, B, in_dim] float32 from ``state``, resetting where ``start`` [T, B] bool.

        Returns ``y`` [T, B, hidden_size] float32 and the state after step T-1.
        """
        T, B = start.shape
        parts = self._parts(state)
        if T == 1:
            y, parts = self._forward_step(x, parts, start)
            return y, self._state(parts)
        if not bool(start[1:].any()):
            y, parts = self._forward_whole(x, parts, start)
            return y, self._state(parts)
        if self._takes_padded(x):
            y, parts = self._forward_padded(x, parts, start)
            return y, self._state(parts)
        # Path 3, in one block unless on CPU with many envs (see the module doc).
        k = T if x.device.type != "cpu" else min(T, max(8, self.cpu_block_rows // B))
        ys = []
        for a in range(0, T, k):
            block = start[a : a + k]
            run = self._forward_segments if bool(block[1:].any()) else self._forward_whole
            y, parts = run(x[a : a + k], parts, block)
            ys.append(y)
        return torch.cat(ys) if len(ys) > 1 else ys[0], self._state(parts)

    def replay(self, x: Tensor, state: State, start: Tensor) -> Tensor:
        """``forward``'s output only; on CPU, chunks with starts inside take path 4 (flush)."""
        if start.shape[0] > 1 and self._takes_padded(x) and bool(start[1:].any()):
            if self.cpu_flush and self._flush_is_cheaper(start):
                return self._flush_outputs(x, self._parts(state), start)
            return self._padded_outputs(x, self._parts(state), start)[0]
        return self(x, state, start)[0]

    def _flush_is_cheaper(self, start: Tensor) -> bool:
        """Path 4 or 3' for a replay: a fused call costs about ``steps * (C + batch)`` row-steps
        (C = ``cpu_step_rows``: a step's fixed cost in rows). Path 4 runs B rows of T + (most
        starts in one env) steps, path 3' S segments of L_max steps; 3' wins only where the
        envs are few and their episodes short (its segments side by side take fewer steps)."""
        T, B = start.shape
        _, first, lengths = _segment_bounds(start)
        flush_steps = T + int(start[1:].sum(0).max())
        c = self.cpu_step_rows
        return flush_steps * (c + B) <= int(lengths.max()) * (c + len(first))

    def _takes_padded(self, x: Tensor) -> bool:
        return x.device.type == "cpu" and self.cpu_padded

    def _forward_step(self, x: Tensor, parts: Parts, start: Tensor) -> tuple[Tensor, Parts]:
        """Path 1 (``T == 1``, acting): reset where ``start[0]``, then one fused cell call per
        layer (``torch.lstm_cell`` / ``torch.gru_cell`` on the module's own weights): the
        same arithmetic as ``nn.LSTM``/``nn.GRU`` for one step, without their per-call
        setup (on CPU oneDNN re-lays out the weights on every call: ~2.5x the cell's time
        for LSTM-128 at 16 envs)."""
        if bool(start[0].any()):
            keep = ~start[0].view(-1, 1, 1)
            parts = tuple(torch.where(keep, p, 0.0) for p in parts)
        inp, new = x[0], []
        for layer in range(self.num_layers):
            weights = [getattr(self.rnn, f"{w}_l{layer}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if self.n_parts == 2:
                h, c = torch.lstm_cell(inp, (parts[0][:, layer], parts[1][:, layer]), *weights)
                new.append((h, c))
            else:
                h = torch.gru_cell(inp, parts[0][:, layer], *weights)
                new.append((h,))
            inp = h
        return inp[None], tuple(torch.stack(p, 1) for p in zip(*new))

    def _forward_whole(self, x: Tensor, parts: Parts, start: Tensor) -> tuple[Tensor, Parts]:
        """Path 2: no start after step 0, so reset where ``start[0]``, then one call."""
        keep = ~start[0].view(-1, 1, 1)
        parts = tuple(torch.where(keep, p, 0.0) for p in parts)
        y, hn = self.rnn(x, self._to_hx(parts))
        return y, self._from_hx(hn)

    def _segments(self, parts: Parts, start: Tensor):
        """Cut every env's chunk at its starts: index tensors shared by paths 3 and 3'."""
        T, B = start.shape
        n = B * T
        begin, first, lengths = _segment_bounds(start)
        seg = begin.cumsum(0) - 1                       # [B*T] segment of each (b, t)
        S = first.numel()
        step = torch.arange(n, device=start.device) - first[seg]   # [B*T] step within segment
        seg_env = first // T                            # [S]   env of each segment
        # Only a segment that begins at t = 0 without an episode start continues the
        # carried state; all others start from zeros (the initial state).
        carry = ((first % T) == 0) & ~start[0, seg_env]
        h0 = tuple(torch.where(carry.view(S, 1, 1), p[seg_env], 0.0) for p in parts)  # [S, L, H]
        last = seg.view(B, T)[:, -1]                    # [B] last segment of each env
        # Index in time-major [T, B] order so x and y need no transposes.
        return h0, lengths, step.view(B, T).t(), seg.view(B, T).t(), last, first[last] % T

    def _forward_segments(self, x: Tensor, parts: Parts, start: Tensor) -> tuple[Tensor, Parts]:
        """Path 3: one packed call over the segments between episode starts (module doc)."""
        h0, lengths, step_tb, seg_tb, last, _ = self._segments(parts, start)
        lmax = int(lengths.max())
        padded = x.new_zeros(lmax, len(lengths), x.shape[-1]).index_put((step_tb, seg_tb), x)
        packed = pack_padded_sequence(padded, lengths.cpu(), enforce_sorted=False)
        out, hn = self.rnn(packed, self._to_hx(h0))     # hn comes back in segment order
        y = pad_packed_sequence(out, total_length=lmax)[0][step_tb, seg_tb]  # [T, B, H]
        return y, tuple(p[last] for p in self._from_hx(hn))

    def _forward_padded(self, x: Tensor, parts: Parts, start: Tensor) -> tuple[Tensor, Parts]:
        """Path 3' (CPU): the segments padded but *not* packed, so the call takes the fused
        kernel (LSTM: oneDNN's, ~5-10x faster than the packed CPU kernel). Padding sits
        after each segment's end, so every real output is exact; the padded call's final
        state is not, so each env's final state comes from one more fused call per distinct
        start time of the envs' last segments (they run to T - 1)."""
        y, h0, last, last_start = self._padded_outputs(x, parts, start)
        final = [p.new_empty(p[last].shape) for p in h0]  # [B, L, H] per part
        for t in torch.unique(last_start).tolist():     # <= min(B, T) iterations
            envs = (last_start == t).nonzero().squeeze(1)
            _, hn = self.rnn(x[t:, envs], self._to_hx(tuple(p[last[envs]] for p in h0)))
            for f, h in zip(final, self._from_hx(hn)):
                f[envs] = h
        return y, tuple(final)

    def _padded_outputs(self, x: Tensor, parts: Parts, start: Tensor):
        """Path 3' without the final state: ``y`` [T, B, H] plus what the final state needs."""
        h0, lengths, step_tb, seg_tb, last, last_start = self._segments(parts, start)
        padded = x.new_zeros(int(lengths.max()), len(lengths), x.shape[-1]).index_put((step_tb, seg_tb), x)
        out, _ = self.rnn(padded, self._to_hx(h0))
        return out[step_tb, seg_tb], h0, last, last_start

    def _flush_outputs(self, x: Tensor, parts: Parts, start: Tensor) -> Tensor:
        """Path 4 (CPU replays): every env's chunk stays one row; a *flush step* is inserted
        before each start after t = 0, and each layer is one fused call over the longer rows
        (module doc). Returns ``y`` [T, B, H]; the final state is not computed."""
        T, B = start.shape
        inner = start.clone()
        inner[0] = False
        shift = inner.long().cumsum(0)                  # [T, B] flush steps at or before t
        row_t = torch.arange(T, device=x.device).view(T, 1) + shift  # where (t, b) lands
        env = torch.arange(B, device=x.device).expand(T, B)
        t_in, b_in = inner.nonzero(as_tuple=True)
        rows = T + int(shift[-1].max())                 # padding after a row's end is unread
        keep = ~start[0].view(-1, 1, 1)
        h0 = tuple(torch.where(keep, p, 0.0) for p in parts)
        flag = x.new_zeros(rows, B, 1)
        flag[row_t[t_in, b_in] - 1, b_in] = 1.0         # the step before each start
        out = x.new_zeros(rows, B, x.shape[-1]).index_put((row_t, env), x)
        H = self.hidden_size
        for layer in range(self.num_layers):  # a lower layer's output is exactly 0 at flush steps
            inp = torch.cat([out, flag], -1)
            w_ih, w_hh, b_ih, b_hh = (getattr(self.rnn, f"{w}_l{layer}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            if self.n_parts == 2:   # LSTM gates i, f, g, o: shut i, f and o
                col = torch.cat([w_ih.new_full((2 * H,), FLUSH), w_ih.new_zeros(H), w_ih.new_full((H,), FLUSH)])
            else:                   # GRU gates r, z, n: shut r and z, cancel n's input bias
                col = torch.cat([w_ih.new_full((2 * H,), FLUSH), -b_ih[2 * H :]])
            weights = [torch.cat([w_ih, col.unsqueeze(1)], 1), w_hh, b_ih, b_hh]
            hx = tuple(p[:, layer].unsqueeze(0).contiguous() for p in h0)
            call = torch.lstm if self.n_parts == 2 else torch.gru
            out = call(inp, hx if self.n_parts == 2 else hx[0], weights, True, 1, 0.0, self.training, False, False)[0]
        return out[row_t, env]


def _segment_bounds(start: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Where the segments between episode starts begin: the begin mask, flattened env-major
    ([B, T] -> [B*T], so segment ids increase along each env's chunk; every env begins one at
    t = 0, so no segment spans two envs), the flat index of each segment's first step [S],
    and each segment's length [S]."""
    T, B = start.shape
    begin = start.t().clone()
    begin[:, 0] = True
    begin = begin.reshape(B * T)
    first = begin.nonzero().squeeze(1)
    return begin, first, torch.diff(first, append=first.new_tensor([B * T]))


@register("gru")
class GRUMemory(_Recurrent):
    """GRU memory. State ``h`` [B, num_layers, hidden_size] float32.

    Args:
        in_dim: features per step.
        hidden_size: width of the hidden state and of the output (``out_dim``).
        num_layers: stacked GRU layers.
    """

    rnn_cls = nn.GRU
    kind = "gru"
    n_parts = 1
    cpu_step_rows = 64


@register("lstm")
class LSTMMemory(_Recurrent):
    """LSTM memory. State ``(h, c)``, each [B, num_layers, hidden_size] float32.

    Args:
        in_dim: features per step.
        hidden_size: width of the hidden and cell states and of the output (``out_dim``).
        num_layers: stacked LSTM layers.
    """

    rnn_cls = nn.LSTM
    kind = "lstm"
    n_parts = 2
    cpu_step_rows = 4
