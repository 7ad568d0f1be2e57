"""Typed errors raised by library code.

The CLI turns every :class:`RlmemError` into one line on stderr and exit code 2;
library code never prints and never exits.
"""

from __future__ import annotations


class RlmemError(Exception):
    """Base class of every error the CLI reports as one clear line."""


class ConfigError(RlmemError, ValueError):
    """A config, preset or recipe is malformed, mistyped, or holds impossible values."""


class UnknownNameError(RlmemError, KeyError):
    """A name (environment id, memory, preset) is not registered.

    The message lists the valid names.
    """

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class RunError(RlmemError):
    """A run directory or checkpoint is missing, corrupt, or would be overwritten."""
