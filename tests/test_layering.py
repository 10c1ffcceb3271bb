"""The import directions of design.md, read from the source with `ast`."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(folder: Path) -> dict[Path, set[str]]:
    found = {}
    for file in folder.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[file] = names
    return found


def roots(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_quantize_imports_only_torch():
    for file, names in imported_modules(ROOT / "vqbet" / "quantize").items():
        outside = {n for n in names if not n.startswith(("vqbet.quantize", "torch"))}
        outside -= {"__future__", "math", "dataclasses", "collections.abc", "typing"}
        assert not outside, f"{file} imports {outside}"


def test_library_never_imports_hydra_mujoco_envs_or_scripts():
    for file, names in imported_modules(ROOT / "vqbet").items():
        bad = roots(names) & {"hydra", "omegaconf", "mujoco", "envs", "scripts"}
        assert not bad, f"{file} imports {bad}"


def test_tokenizer_does_not_import_policy_side():
    for name in ("tokenizer.py", "normalize.py", "checkpoint.py"):
        names = imported_modules(ROOT / "vqbet")[ROOT / "vqbet" / name]
        bad = {n for n in names if n.startswith(("vqbet.policy", "vqbet.gpt", "vqbet.train"))}
        assert not bad, f"{name} imports {bad}"


def test_envs_import_no_torch_and_no_vqbet():
    folder = ROOT / "envs"
    if not any(folder.glob("*.py")):
        pytest.skip("no envs yet")
    for file, names in imported_modules(folder).items():
        bad = roots(names) & {"torch", "vqbet"}
        assert not bad, f"{file} imports {bad}"
