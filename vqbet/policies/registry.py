"""The registry of policy families: each family's module registers its class under a name, the
name that configs (`policy.name`) and checkpoints (`family`) use.

A new family is one new module with `@register_policy("name")` on its class (plus a config in
`configs/policy/`): a module `vqbet.policies.<name>` is imported on first use of its name, and a
family living in another package registers when that package is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from vqbet.policies.base import Policy

POLICIES: dict[str, type[Policy]] = {}
"""Registered families by name."""

P = TypeVar("P", bound="type[Policy]")


def register_policy(name: str):
    """Class decorator: register a Policy subclass as family `name` (sets `cls.name`)."""

    def add(cls: P) -> P:
        if name in POLICIES and POLICIES[name] is not cls:
            raise ValueError(f"policy family {name!r} is already registered by {POLICIES[name].__qualname__}")
        cls.name = name
        POLICIES[name] = cls
        return cls

    return add


def policy_class(name: str) -> type[Policy]:
    """The class of family `name`; imports `vqbet.policies.<name>` if it is not registered yet."""
    if name not in POLICIES and isinstance(name, str) and name.isidentifier():
        try:
            importlib.import_module(f"vqbet.policies.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"vqbet.policies.{name}":
                raise
    if name not in POLICIES:
        raise ValueError(f"unknown policy family {name!r}; registered: {sorted(POLICIES)}")
    return POLICIES[name]
