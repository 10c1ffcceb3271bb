"""Scripted stochastic experts, one module per task. Each picks a mode (a sub-goal order) at reset
and acts from the observation plus the env's public state; randomness only from its own seeded
generator.

    expert = make_expert(env, seed=3); expert.reset(); action = expert.act(obs)
"""

from __future__ import annotations

from typing import Any

from envs.experts.base import CurvedPath, Expert
from envs.experts.blockpush import BlockPushExpert
from envs.experts.kitchen import KitchenExpert
from envs.experts.multireach import MultiReachExpert
from envs.experts.pusht import PushTExpert

EXPERTS: dict[str, type[Expert]] = {
    "MultiReach": MultiReachExpert,
    "BlockPush": BlockPushExpert,
    "PushT": PushTExpert,
    "Kitchen": KitchenExpert,
}
"""Expert class by task name (the env class name without "Env")."""

__all__ = [
    "EXPERTS",
    "BlockPushExpert",
    "CurvedPath",
    "Expert",
    "KitchenExpert",
    "MultiReachExpert",
    "PushTExpert",
    "make_expert",
]


def make_expert(env: Any, seed: int) -> Expert:
    """The scripted expert of `env`'s task, seeded."""
    name = type(env.unwrapped).__name__.removesuffix("Env")
    if name not in EXPERTS:
        raise ValueError(f"no scripted expert for task {name!r}; known: {sorted(EXPERTS)}")
    return EXPERTS[name](env, seed)
