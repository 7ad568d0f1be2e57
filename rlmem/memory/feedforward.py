"""``none``: the memoryless control, the baseline every comparison table shows.

Each step is read on its own by a small MLP (``num_layers`` x Linear + Tanh), so the
output has the same width as the recurrent memories and the comparison is fair: the
only thing the control lacks is memory. Its state is an empty tensor ``[B, 0]`` that
still has the batch as first dim, so the state-tree helpers and the training loops
treat it like any other memory.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rlmem.errors import ConfigError
from rlmem.memory.base import Memory, State, register


@register("none")
class NoMemory(Memory):
    """Memoryless control: ``y[t] = mlp(x[t])``.

    Args:
        in_dim: features per step.
        hidden_size: width of every layer, and ``out_dim`` (unless ``num_layers == 0``).
        num_layers: number of Linear + Tanh layers; ``0`` makes the memory the identity
            (``out_dim == in_dim``).

    Shapes: ``x`` [T, B, in_dim] float32 -> ``y`` [T, B, out_dim] float32;
    state [B, 0] float32 (nothing is remembered, ``start`` is ignored).
    """

    def __init__(self, in_dim: int, hidden_size: int = 128, num_layers: int = 1):
        super().__init__()
        if in_dim < 1 or hidden_size < 1 or num_layers < 0:
            raise ConfigError(
                f"none: need in_dim >= 1, hidden_size >= 1, num_layers >= 0; "
                f"got in_dim={in_dim}, hidden_size={hidden_size}, num_layers={num_layers}"
            )
        self.in_dim = in_dim
        self.out_dim = hidden_size if num_layers > 0 else in_dim
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_size), nn.Tanh()]
            width = hidden_size
        self.net = nn.Sequential(*layers)  # an empty Sequential is the identity

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """An empty state [batch_size, 0] float32 (on the module's device by default)."""
        if device is None:
            device = next((p.device for p in self.parameters()), None)
        return torch.zeros(batch_size, 0, device=device)

    def forward(self, x: Tensor, state: State, start: Tensor) -> tuple[Tensor, State]:
        """``x`` [T, B, in_dim] -> (``y`` [T, B, out_dim], ``state`` unchanged [B, 0])."""
        return self.net(x), state
