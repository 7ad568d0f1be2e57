"""Memory controllers: one interface (:mod:`rlmem.memory.base`), one file per family."""

from rlmem.memory.base import (
    Memory,
    State,
    clone_state,
    detach_state,
    index_state,
    make,
    map_state,
    names,
    register,
    reset_state,
)
from rlmem.memory import feedforward, recurrent, transformer  # noqa: F401  (register the families)
from rlmem.memory import casebank  # noqa: F401  (Q-valued episodic case banks)

__all__ = [
    "Memory",
    "State",
    "clone_state",
    "detach_state",
    "index_state",
    "make",
    "map_state",
    "names",
    "register",
    "reset_state",
]
