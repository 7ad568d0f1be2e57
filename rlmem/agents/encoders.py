"""Per-step observation encoders, chosen from the observation space.

==========================  ==============================================================
space                       encoder
==========================  ==============================================================
``Box`` of 1 or 2 dims      flatten -> MLP (``PolicyConfig.encoder`` sizes)
``Box`` (H, W, C), H,W >= 5  small CNN (2 conv layers) -> flatten -> MLP; uint8 images in
                            [0, 255] are scaled to [0, 1]; images with both sides >= 14 px
                            are first cut into about 7 x 7 patches; integer grids of codes
                            (a ``high`` below 255, e.g. MiniGrid's symbolic view) are
                            embedded per channel first (see ImageEncoder)
``Discrete``                one-hot -> MLP
``Dict``                    one small encoder per key, outputs concatenated -> MLP
                            (:class:`DictEncoder`: the goal-conditioned encoder)
==========================  ==============================================================

Every encoder maps ``[T, B, *obs_shape]`` (any dtype) to ``[T, B, out_dim]`` float32; a
``Dict`` encoder maps a dict of such tensors, one per key (see :mod:`rlmem.agents.obs`).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlmem.errors import ConfigError

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def ortho(layer: nn.Module, gain: float) -> nn.Module:
    """Orthogonal weights and zero bias: the PPO initialisation (CleanRL, SB3)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(in_dim: int, sizes: tuple[int, ...], activation: str) -> tuple[nn.Module, int]:
    """Linear + activation layers of the given sizes; returns (module, out_dim)."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [ortho(nn.Linear(in_dim, size), math.sqrt(2)), act()]
        in_dim = size
    return nn.Sequential(*layers), in_dim


def is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and min(space.shape[:2]) >= 5


def make_encoder(space: gym.Space, sizes: tuple[int, ...], activation: str, goal_gating: bool = False) -> "Encoder":
    """The encoder of the table above, ending in an MLP of hidden ``sizes``; ``goal_gating``:
    see :class:`DictEncoder` (Dict spaces only)."""
    if isinstance(space, gym.spaces.Dict):
        return DictEncoder(space, sizes, activation, goal_gating)
    if goal_gating:
        raise ConfigError(f"policy.goal_gating needs a Dict observation space with goal_* keys, got {space}")
    if isinstance(space, gym.spaces.Discrete):
        return OneHotEncoder(space, sizes, activation)
    if is_image(space):
        return ImageEncoder(space, sizes, activation)
    if isinstance(space, gym.spaces.Box):
        return FlatEncoder(space, sizes, activation)
    raise ConfigError(
        f"observation space {space} is not supported by rlmem's encoders (Box, image Box, Discrete and Dict are)"
    )


class Encoder(nn.Module):
    out_dim: int


class FlatEncoder(Encoder):
    """Flatten the observation, then an MLP."""

    def __init__(self, space: gym.spaces.Box, sizes: tuple[int, ...], activation: str):
        super().__init__()
        self.in_dim = int(np.prod(space.shape))
        self.net, self.out_dim = mlp(self.in_dim, sizes, activation)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs.reshape(*obs.shape[:2], self.in_dim).float())


class OneHotEncoder(Encoder):
    """One-hot of a Discrete observation, then an MLP."""

    def __init__(self, space: gym.spaces.Discrete, sizes: tuple[int, ...], activation: str):
        super().__init__()
        self.n, self.start = int(space.n), int(space.start)
        self.net, self.out_dim = mlp(self.n, sizes, activation)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(nn.functional.one_hot(obs.long() - self.start, self.n).float())


class ImageEncoder(Encoder):
    """Channels-last images [T, B, H, W, C]: two 3x3 convolutions (16, 32 channels, the
    second with stride 2), flatten, then the MLP. Small on purpose: MiniGrid-sized views.

    Bigger images (both sides >= 14 px) first pass a patchify convolution (16 channels,
    kernel = stride = ``min(H, W) // 7``) that brings them to about 7 x 7: one patch per
    cell of a MiniGrid picture of a 7 x 7 view (e.g. a 56 x 56 goal view, 8 px per cell),
    with ~18x fewer multiply-adds than the 3x3 layers at 56 x 56 (0.37M instead of 6.6M per
    image). Smaller images take exactly the network above (no patchify layer).

    Grids of codes: an integer ``Box`` whose ``high`` is the same in every cell and below 255
    in every channel (:func:`code_vocab`; e.g. GoatGrid's symbolic view, object 0..10, colour
    0..5, state 0..2) holds categories, not intensities: each channel's code is looked up in
    an embedding of its own (``CODE_DIM`` units, as BabyAI's bag-of-words cell encoder) and the
    channels' embeddings are concatenated before the convolutions. Read as numbers, "box" (7)
    and "ball" (6) would differ by 1/255.
    """

    channels = 32
    """Feature maps of the last convolution (what a goal gate scales, see :class:`DictEncoder`)."""

    def __init__(self, space: gym.spaces.Box, sizes: tuple[int, ...], activation: str):
        super().__init__()
        h, w, c = space.shape
        vocab = code_vocab(space)
        self.codes = None if vocab is None else nn.ModuleList(nn.Embedding(n, CODE_DIM) for n in vocab)
        if self.codes is not None:
            c = CODE_DIM * len(vocab)
        # uint8 pixels in [0, 255] are scaled; float observations (e.g. one-hot maps) are not
        self.scale = 1 / 255 if space.dtype == np.uint8 and float(np.max(space.high)) == 255 else 1.0
        patch = min(h, w) // 7
        stem: list[nn.Module] = []
        if patch >= 2:
            stem = [ortho(nn.Conv2d(c, 16, patch, stride=patch), math.sqrt(2)), nn.ReLU()]
            h, w, c = h // patch, w // patch, 16
        self.conv = nn.Sequential(
            *stem,
            ortho(nn.Conv2d(c, 16, 3, padding=1), math.sqrt(2)), nn.ReLU(),
            ortho(nn.Conv2d(16, self.channels, 3, stride=2, padding=1), math.sqrt(2)), nn.ReLU(),
        )
        conv_out = self.channels * ((h + 1) // 2) * ((w + 1) // 2)
        self.net, self.out_dim = mlp(conv_out, sizes or (256,), activation)

    def forward(self, obs: Tensor, gate: Tensor | None = None) -> Tensor:
        """``gate`` [T, B, channels] in (0, 1), optional: scales the last convolution's feature
        maps channel by channel (:class:`DictEncoder`'s goal gating)."""
        T, B = obs.shape[:2]
        x = obs.reshape(T * B, *obs.shape[2:])
        if self.codes is not None:  # [N, H, W, C] codes -> [N, H, W, C * CODE_DIM] embeddings
            x = torch.cat([emb(x[..., i].long()) for i, emb in enumerate(self.codes)], dim=-1)
        else:
            x = x.float() * self.scale
        maps = self.conv(x.permute(0, 3, 1, 2))
        if gate is not None:
            maps = maps * gate.reshape(T * B, self.channels, 1, 1)
        return self.net(maps.flatten(1)).reshape(T, B, -1)


CODE_DIM = 8
"""Embedding size of one channel's code in a grid of codes (:class:`ImageEncoder`)."""


def code_vocab(space: gym.Space) -> tuple[int, ...] | None:
    """Codes per channel (``high + 1``) if ``space`` is an image ``Box`` of integer codes: an
    integer dtype, ``low`` 0, the same ``high`` in every cell and below 255 in every channel.
    None for anything else (pixels, floats)."""
    if not (is_image(space) and np.issubdtype(space.dtype, np.integer)):
        return None
    low, high = np.asarray(space.low), np.asarray(space.high)
    per_channel = high.reshape(-1, high.shape[-1])
    if low.any() or (per_channel != per_channel[0]).any() or (per_channel[0] >= 255).any():
        return None
    return tuple(int(v) + 1 for v in per_channel[0])


# --------------------------------------------------------------------------- Dict observations
FEATURES = 64
"""Output size of each learned per-key encoder of a :class:`DictEncoder` (images, token ids)."""
TOKEN_DIM = 8
"""Embedding size of one token id (:class:`TokenEncoder`)."""
MAX_VOCAB = 65_536
"""Integer vectors with more possible values than this are read as numbers, not as ids."""


def token_range(space: gym.Space) -> tuple[int, int] | None:
    """``(low, vocab)`` if ``space`` is a 1-D vector of integer ids in ``[low, low + vocab)``
    (an integer ``Box`` with finite bounds, or a ``MultiDiscrete``), else None."""
    if isinstance(space, gym.spaces.MultiDiscrete) and len(space.shape) == 1:
        low, high = int(np.min(space.start)), int(np.max(space.start + space.nvec)) - 1
    elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and np.issubdtype(space.dtype, np.integer):
        if not space.is_bounded("both"):
            return None
        low, high = int(np.min(space.low)), int(np.max(space.high))
    else:
        return None
    vocab = high - low + 1
    return (low, vocab) if 0 < vocab <= MAX_VOCAB else None


class TokenEncoder(Encoder):
    """A fixed-length vector of integer ids ``[T, B, L]`` (e.g. goal text, padded): one shared
    embedding table, looked up at every position, the L embeddings concatenated, then the MLP.

    Concatenation rather than a mean over tokens because word order carries meaning: "the
    purple box in the room with the yellow door" and "the yellow box in the room with the
    purple door" have the same bag of words. It is also cheaper than a GRU over the tokens
    (one matrix product per step), and padding ids are simply learned as a word.
    """

    def __init__(self, space: gym.Space, sizes: tuple[int, ...], activation: str):
        super().__init__()
        found = token_range(space)
        if found is None:
            raise ConfigError(f"TokenEncoder needs a 1-D integer Box or MultiDiscrete of ids, got {space}")
        self.low, vocab = found
        self.length = int(space.shape[0])
        self.embed = nn.Embedding(vocab, TOKEN_DIM)
        self.net, self.out_dim = mlp(self.length * TOKEN_DIM, sizes, activation)

    def forward(self, obs: Tensor) -> Tensor:
        x = self.embed(obs.long() - self.low)  # [T, B, L, TOKEN_DIM]
        return self.net(x.flatten(2))


class DictEncoder(Encoder):
    """The goal-conditioned encoder: a ``Dict`` observation ``{key: [T, B, *shape_key]}``,
    one small encoder per key, their outputs concatenated, then the MLP of hidden ``sizes``.

    Per key, from the sub-space:

    - image ``Box`` (H, W, C): :class:`ImageEncoder` -> ``FEATURES`` units -> LayerNorm;
    - a 1-D vector of integer ids (:func:`token_range`): :class:`TokenEncoder` ->
      ``FEATURES`` -> LayerNorm;
    - ``Discrete``: one-hot (no layer of its own); other ``Box`` / ``MultiBinary``: the
      flattened values as they are (the shared MLP reads them);
    - ``Dict``: a nested :class:`DictEncoder` with a ``FEATURES`` MLP.

    So a goal (modality, category, text, image) enters next to the egocentric view at every
    step.

    ``goal_gating`` adds gated attention (Chaplot et al., "Gated-Attention Architectures for
    Task-Oriented Language Grounding", AAAI 2018): the outputs of the ``goal_*`` keys' branches,
    concatenated, go through a linear layer and a sigmoid to one gate per feature channel of
    each image key that is not a goal (the view), and scale that key's last convolutional
    feature maps before they are flattened. "Is the purple box in sight" then is one channel
    gated on, instead of a conjunction the MLP after the concatenation has to build from two
    separate vectors. The goal's features are still concatenated as well.

    The LayerNorm after each learned branch keeps one key from drowning the others by
    scale, and makes the branch indifferent to how an image is coded: a symbolic view declared
    0..255 (codes 0..10, e.g. the MiniGrid adapter's) arrives as values below 0.05 after the
    uint8 scaling, and would otherwise need its weights to grow ~25-fold before it counts.
    """

    def __init__(self, space: gym.spaces.Dict, sizes: tuple[int, ...], activation: str, goal_gating: bool = False):
        super().__init__()
        if not space.spaces:
            raise ConfigError("a Dict observation space needs at least one key")
        branches = {}
        for key, sub in space.spaces.items():
            if not isinstance(key, str) or not key or "." in key:
                raise ConfigError(f"Dict observation keys must be non-empty strings without '.', got {key!r}")
            branches[key] = _branch(key, sub, activation)
        self.keys = list(branches)
        self.branches = nn.ModuleDict(branches)
        in_dim = sum(b.out_dim for b in branches.values())
        self.net, self.out_dim = mlp(in_dim, sizes, activation)

        self.goal_keys: list[str] = []
        self.gates = nn.ModuleDict()  # view key -> its gate layer; empty without goal_gating
        if goal_gating:
            self.goal_keys = [k for k in self.keys if k.startswith("goal_")]
            views = [k for k in self.keys if not k.startswith("goal_") and is_image(space[k])]
            if not (self.goal_keys and views):
                raise ConfigError(
                    f"policy.goal_gating needs goal_* keys and an image view in the observation; got keys {self.keys}"
                )
            goal_dim = sum(branches[k].out_dim for k in self.goal_keys)
            self.gates.update({k: nn.Linear(goal_dim, branches[k].inner.channels) for k in views})

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        if not self.gates:
            return self.net(torch.cat([self.branches[k](obs[k]) for k in self.keys], dim=-1))
        out = {k: self.branches[k](obs[k]) for k in self.keys if k not in self.gates}
        goal = torch.cat([out[k] for k in self.goal_keys], dim=-1)
        for k, gate in self.gates.items():
            out[k] = self.branches[k](obs[k], gate=torch.sigmoid(gate(goal)))
        return self.net(torch.cat([out[k] for k in self.keys], dim=-1))


class _Normed(Encoder):
    """A learned branch followed by LayerNorm over its output units."""

    def __init__(self, inner: Encoder):
        super().__init__()
        self.inner, self.norm, self.out_dim = inner, nn.LayerNorm(inner.out_dim), inner.out_dim

    def forward(self, obs: Tensor, **kwargs) -> Tensor:
        return self.norm(self.inner(obs, **kwargs))


def _branch(key: str, space: gym.Space, activation: str) -> Encoder:
    """The per-key encoder of a :class:`DictEncoder` (see its docstring)."""
    if isinstance(space, gym.spaces.Dict):
        return DictEncoder(space, (FEATURES,), activation)
    if isinstance(space, gym.spaces.Discrete):
        return OneHotEncoder(space, (), activation)
    if is_image(space):
        return _Normed(ImageEncoder(space, (FEATURES,), activation))
    if token_range(space) is not None:
        return _Normed(TokenEncoder(space, (FEATURES,), activation))
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary)):
        return FlatEncoder(space, (), activation)
    raise ConfigError(
        f"observation key {key!r}: space {space} is not supported by rlmem's encoders "
        "(Box, image Box, integer-id vectors, Discrete, MultiBinary and Dict are)"
    )
