"""Registries by name, for the seams a new family plugs into (policies, tokenizers): a class
registers itself with a decorator, and a name not registered yet is looked up as a module of the
seam's package (`<package>.<name>`), imported on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

C = TypeVar("C", bound=type)


class Registry(Generic[C]):
    """Classes by name. `kind` names the seam in errors ("policy family"); `attribute` is the
    class attribute set to the registered name; `package` holds the built-in families."""

    def __init__(self, kind: str, attribute: str, package: str) -> None:
        self.kind, self.attribute, self.package = kind, attribute, package
        self.classes: dict[str, C] = {}

    def register(self, name: str) -> Callable[[C], C]:
        """Class decorator: register the class as `name` (and set its `attribute` to it)."""

        def add(cls: C) -> C:
            if name in self.classes and self.classes[name] is not cls:
                held = self.classes[name].__qualname__
                raise ValueError(f"{self.kind} {name!r} is already registered by {held}")
            setattr(cls, self.attribute, name)
            self.classes[name] = cls
            return cls

        return add

    def get(self, name: str) -> C:
        """The class registered as `name`; imports `<package>.<name>` if it is not registered yet."""
        if name not in self.classes and isinstance(name, str) and name.isidentifier():
            try:
                importlib.import_module(f"{self.package}.{name}")
            except ModuleNotFoundError as err:
                if err.name != f"{self.package}.{name}":
                    raise
        if name not in self.classes:
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {sorted(self.classes)}")
        return self.classes[name]
