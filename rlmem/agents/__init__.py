"""Policies: observation encoder -> Memory -> actor / critic heads."""

from rlmem.agents.policy import ActorCritic, PolicyOut

__all__ = ["ActorCritic", "PolicyOut"]
