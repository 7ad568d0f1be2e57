"""The one interface every neural memory controller implements.

Tensors are time-major. A memory reads a chunk of ``T`` steps for ``B`` environments,
starting from the state it had before step 0, and an explicit ``start`` mask that says
where a new episode begins::

    y, state = memory(x, state, start)
    # x     [T, B, in_dim]  float
    # state State (tensor, or tuple/dict of tensors; first dim of each is B)
    # start [T, B]          bool: an episode starts at step t of env b
    # y     [T, B, out_dim] float
    # state the state after step T-1

Where ``start[t, b]`` is true the memory of env ``b`` is reset to its initial value
*before* step ``t`` is read, so no information crosses an episode boundary. A single
environment step is a call with ``T = 1``. Every memory must satisfy the invariant that
one call over ``T`` steps equals ``T`` one-step calls threading the state (tested for
every registered memory in ``tests/test_memory.py``). ``memory.replay(x, state, start)``
returns ``y`` alone, for training passes that discard the final state.
"""

from __future__ import annotations

from typing import Callable, Union

import torch
from torch import Tensor, nn

from rlmem.errors import UnknownNameError

State = Union[Tensor, tuple, dict]


class Memory(nn.Module):
    """Base class of memory controllers.

    Subclasses set ``in_dim`` and ``out_dim`` and implement :meth:`initial_state` and
    :meth:`forward`.
    """

    in_dim: int
    out_dim: int

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The state of ``batch_size`` fresh episodes (first dim of every tensor = batch)."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: State, start: Tensor) -> tuple[Tensor, State]:
        """Read ``x`` [T, B, in_dim] from ``state``; reset where ``start`` [T, B] is true."""
        raise NotImplementedError

    def replay(self, x: Tensor, state: State, start: Tensor) -> Tensor:
        """``forward``'s ``y`` alone, for training replays that discard the final state.

        Memories whose final state costs extra work may skip it here (``lstm`` on CPU);
        the output must equal ``forward``'s (tested for every memory).
        """
        return self(x, state, start)[0]


# --------------------------------------------------------------------------- state trees
def map_state(fn: Callable[..., Tensor], *states: State) -> State:
    """Apply ``fn`` leaf-wise to one or more states of the same structure."""
    first = states[0]
    if isinstance(first, Tensor):
        return fn(*states)
    if isinstance(first, tuple):
        return tuple(map_state(fn, *parts) for parts in zip(*states))
    if isinstance(first, dict):
        return {k: map_state(fn, *(s[k] for s in states)) for k in first}
    raise TypeError(f"a memory state is a tensor, tuple or dict of tensors, not {type(first).__name__}")


def reset_state(state: State, initial: State, mask: Tensor) -> State:
    """Where ``mask`` [B] is true, replace env ``b``'s state by ``initial``'s."""

    def where(s: Tensor, s0: Tensor) -> Tensor:
        m = mask.view(-1, *([1] * (s.dim() - 1)))
        return torch.where(m, s0, s)

    return map_state(where, state, initial)


def index_state(state: State, index: Tensor) -> State:
    """Select envs ``index`` (a long tensor) along the batch dim of every leaf."""
    return map_state(lambda s: s[index], state)


def detach_state(state: State) -> State:
    """Cut the gradient history of every leaf (truncated BPTT between chunks)."""
    return map_state(lambda s: s.detach(), state)


def clone_state(state: State) -> State:
    return map_state(lambda s: s.clone(), state)


# --------------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Memory]] = {}


def register(name: str) -> Callable[[type[Memory]], type[Memory]]:
    """Class decorator: make a memory buildable by ``make(name, ...)``."""

    def deco(cls: type[Memory]) -> type[Memory]:
        if name in _REGISTRY:
            raise ValueError(f"memory {name!r} is registered twice")
        _REGISTRY[name] = cls
        return cls

    return deco


def names() -> list[str]:
    """The registered memory names, sorted."""
    return sorted(_REGISTRY)


def make(name: str, in_dim: int, **kwargs) -> Memory:
    """Build the memory called ``name`` reading ``in_dim`` features per step.

    Raises :class:`UnknownNameError` (listing the valid names) for an unknown name and
    :class:`rlmem.errors.ConfigError` for keyword arguments the memory does not take.
    """
    from rlmem.errors import ConfigError

    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown memory {name!r}; valid: {', '.join(names())}")
    cls = _REGISTRY[name]
    try:
        return cls(in_dim, **kwargs)
    except TypeError as e:  # unexpected / missing keyword
        raise ConfigError(f"memory {name!r}: {e}") from None
