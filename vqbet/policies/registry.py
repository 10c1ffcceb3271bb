"""The registry of policy families: each family's module registers its class under a name, the
name that configs (`policy.name`) and checkpoints (`family`) use.

A new family is one new module with `@register_policy("name")` on its class (plus a config in
`configs/policy/`): a module `vqbet.policies.<name>` is imported on first use of its name, and a
family living in another package registers when that package is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vqbet.registry import Registry

if TYPE_CHECKING:
    from vqbet.policies.base import Policy

_REGISTRY: Registry[type[Policy]] = Registry("policy family", "name", "vqbet.policies")
POLICIES: dict[str, type[Policy]] = _REGISTRY.classes
"""Registered families by name."""


def register_policy(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator: register a Policy subclass as family `name` (sets `cls.name`)."""
    return _REGISTRY.register(name)


def policy_class(name: str) -> type[Policy]:
    """The class of family `name`; imports `vqbet.policies.<name>` if it is not registered yet."""
    return _REGISTRY.get(name)
