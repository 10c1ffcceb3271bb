"""Config dataclasses' shared checks: unknown keys and Literal-typed string options.

Every config in vqbet is a dataclass whose string options are typed `Literal[...]`;
`check_literals(self)` in its `__post_init__` turns a typo into an error that names the field and
the allowed values, at the moment the config is built (not deep inside a training step).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Literal


@functools.cache
def _literal_fields(cls: type) -> dict[str, tuple[Any, ...]]:
    hints = typing.get_type_hints(cls)
    return {
        f.name: typing.get_args(hints[f.name])
        for f in dataclasses.fields(cls)
        if typing.get_origin(hints[f.name]) is Literal
    }


def check_literals(config: Any) -> None:
    """Raise ValueError for every Literal-typed field of dataclass `config` whose value is not one
    of its allowed values (all problems in one message)."""
    problems = [
        f"{name} must be one of {'|'.join(map(str, allowed))}, got {getattr(config, name)!r}"
        for name, allowed in _literal_fields(type(config)).items()
        if getattr(config, name) not in allowed
    ]
    if problems:
        raise ValueError(f"{type(config).__name__}: " + "; ".join(problems))


def config_from_dict(cls: type, data: dict[str, Any], source: str) -> Any:
    """Build config dataclass `cls` from a dict, naming unknown keys instead of a bare TypeError."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a {cls.__name__} must be an object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as err:  # e.g. a list where a number belongs
        raise ValueError(f"{source}: bad {cls.__name__}: {err}") from None


_RULES: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "at_least_one": ((int,), lambda v: v >= 1, "an integer >= 1"),
    "counts": ((int,), lambda v: v >= 0, "an integer >= 0"),
    "non_negative": ((int, float), lambda v: v >= 0, "a number >= 0"),
    "positive": ((int, float), lambda v: v > 0, "a number > 0"),
    "flags": ((bool,), lambda v: True, "true or false"),
}


def check_ranges(config: Any, **groups: tuple[str, ...]) -> None:
    """Raise ValueError listing every field of `config` outside its group's range. Groups:
    `at_least_one` (integers >= 1), `counts` (integers >= 0), `non_negative` (numbers >= 0),
    `positive` (numbers > 0), `flags` (bools)."""
    problems = []
    for group, names in groups.items():
        types, ok, wanted = _RULES[group]
        for name in names:
            value = getattr(config, name)
            right_type = isinstance(value, types) and (group == "flags" or not isinstance(value, bool))
            if not right_type or not ok(value):
                problems.append(f"{name} must be {wanted}, got {value!r}")
    if problems:
        raise ValueError(f"{type(config).__name__}: " + "; ".join(problems))
