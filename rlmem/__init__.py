"""rlmem: memory in reinforcement-learning agents.

Importing rlmem registers its environments under the ``rlmem/`` namespace of Gymnasium.
"""

__version__ = "0.1.0"

from rlmem import envs  # noqa: F401,E402  (registration)
