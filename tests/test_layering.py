"""The layout and import directions of docs/design.md, read from the source with `ast`."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {p.stem for p in (ROOT / "scripts").glob("*.py")}


def _names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return {node.module}
    return set()


def imported_modules(folder: Path, top_level_only: bool = False) -> dict[Path, set[str]]:
    """Per file, the absolute modules it imports (with `top_level_only`, outside any function:
    what importing the file imports)."""
    found = {}
    for file in folder.rglob("*.py"):
        tree = ast.parse(file.read_text())
        names: set[str] = set()
        stack: list[ast.AST] = [tree]
        while stack:
            node = stack.pop()
            names |= _names(node)
            for child in ast.iter_child_nodes(node):
                if not (top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))):
                    stack.append(child)
        found[file] = names
    return found


def roots(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_quantize_imports_only_torch():
    for file, names in imported_modules(ROOT / "vqbet" / "quantize").items():
        outside = {n for n in names if not n.startswith(("vqbet.quantize", "torch"))}
        outside -= {
            "__future__",
            "math",
            "contextlib",
            "dataclasses",
            "functools",
            "collections.abc",
            "typing",
        }
        assert not outside, f"{file} imports {outside}"


def test_library_never_imports_hydra_or_scripts_and_only_the_pipeline_imports_envs_lazily():
    everywhere = imported_modules(ROOT / "vqbet")
    at_import = imported_modules(ROOT / "vqbet", top_level_only=True)
    pipeline = ROOT / "vqbet" / "pipeline"
    for file, names in everywhere.items():
        assert not roots(names) & {"hydra", "omegaconf", "scripts"}, f"{file} imports {names}"
        if pipeline not in file.parents:
            assert not roots(names) & {"mujoco", "envs"}, f"{file} imports {names}"
        assert not roots(at_import[file]) & {"mujoco", "envs"}, f"{file} imports envs at import time"


def test_the_library_never_imports_its_integrations():
    """integrations/ (the LeRobot plug-ins) build on vqbet; vqbet works without LeRobot."""
    for folder in (ROOT / "vqbet", ROOT / "envs"):
        for file, names in imported_modules(folder).items():
            assert not {n for n in roots(names) if n.startswith("lerobot")}, f"{file} imports {names}"


def test_vqbet_imports_without_mujoco_envs_or_the_optional_readers():
    optional = ["mujoco", "envs", "pyarrow", "zarr", "av", "minari", "tokenizers"]
    blocked = f"import sys; sys.modules.update(dict.fromkeys({optional!r}))"
    code = f"{blocked}; import vqbet, vqbet.pipeline, vqbet.policies; print(sorted(vqbet.policies.POLICIES))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "['ar', 'mlp', 'vqbet']"


LAYERS: dict[str, set[str]] = {
    "checks": set(),
    "runtime": set(),
    "progress": set(),
    "quantize": set(),
    "io": set(),
    "registry": set(),
    "nn": {"checks"},
    "data": {"io", "checks", "progress"},
    "tokenizers": {"registry", "quantize", "nn", "io", "checks", "progress"},
    "policies": {"registry", "tokenizers", "quantize", "nn", "data", "io", "checks", "progress"},
    "training": {"policies", "nn", "data", "io", "checks", "progress"},
    "evaluation": {"policies", "data", "io", "checks", "progress"},
    "pipeline": {
        "training",
        "evaluation",
        "policies",
        "tokenizers",
        "nn",
        "data",
        "io",
        "checks",
        "progress",
    },
}
"""Each part of vqbet (a sub-package or a top-level module) and the other parts it may import: a
part never imports one above it, so reading any file needs only the files below it."""


def _part(file: Path) -> str:
    parts = file.relative_to(ROOT / "vqbet").parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def test_every_part_imports_only_the_parts_below_it():
    for file, names in imported_modules(ROOT / "vqbet").items():
        part = _part(file)
        if part == "__init__":
            continue
        assert part in LAYERS, f"{file}: {part!r} is not a part of the layout (tests/test_layering.py)"
        used = {n.split(".")[1] for n in names if n.startswith("vqbet.")} - {part}
        assert used <= LAYERS[part], f"{file} ({part}) imports {sorted(used - LAYERS[part])}"
        assert "vqbet" not in names, f"{file} imports the vqbet package itself (import the part)"


def test_the_top_level_stays_small_and_holds_no_measurement_code():
    top = sorted(p.name for p in (ROOT / "vqbet").glob("*.py"))
    assert len(top) <= 8, top
    for file in (ROOT / "vqbet").rglob("*.py"):
        assert "benchmark" not in file.name, file
        assert "argparse" not in roots(imported_modules(file.parent)[file]), f"{file} parses a command line"


def test_no_two_modules_share_a_name_at_different_depths_unless_they_share_a_role():
    # base.py: a seam's interface; common.py: a package's shared helpers; kmeans.py, fsq.py, mlp.py:
    # a registered family's module is named by its registry key (tokenizers.fsq, policies.mlp);
    # registry.py: the generic registry, and the policy seam's registry built on it.
    same_role = {"__init__.py", "base.py", "common.py", "kmeans.py", "fsq.py", "mlp.py", "registry.py"}
    seen: dict[str, Path] = {}
    for file in sorted((ROOT / "vqbet").rglob("*.py")):
        if file.name in seen and file.name not in same_role:
            raise AssertionError(f"{file} and {seen[file.name]} share a name")
        seen.setdefault(file.name, file)


WARP_ENVS = ROOT / "envs" / "warp"
"""The tasks on MuJoCo Warp: the one place in envs/ that uses torch (its tensors are the batch)."""


def test_envs_import_no_torch_and_no_vqbet():
    for file, names in imported_modules(ROOT / "envs").items():
        bad = roots(names) & {"vqbet"}
        if WARP_ENVS not in file.parents:
            bad |= roots(names) & {"torch", "warp", "mujoco_warp"}
        assert not bad, f"{file} imports {bad}"


def test_importing_envs_or_envs_warp_imports_no_torch_and_no_warp():
    # envs.warp's package file names the tasks and their errors without loading anything; its
    # modules, which import torch and Warp, load only when a vector env is made.
    at_import = imported_modules(ROOT / "envs", top_level_only=True)
    for file, names in at_import.items():
        if file == WARP_ENVS / "__init__.py" or WARP_ENVS not in file.parents:
            bad = roots(names) & {"torch", "warp", "mujoco_warp"}
            assert not bad, f"{file} imports {bad} at import time"
            modules = {n for n in names if n.startswith("envs.warp.")}
            assert not modules, f"{file} imports {modules} at import time"


def test_scripts_and_tests_import_no_script_and_edit_no_sys_path():
    for folder in ("scripts", "tests"):
        for file, names in imported_modules(ROOT / folder).items():
            bad = roots(names) & (SCRIPTS | {"scripts"})
            assert not bad, f"{file} imports the script(s) {bad}"
            assert not re.search(r"sys\.path\.(insert|append)", file.read_text()), file
