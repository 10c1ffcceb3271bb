"""The import directions of design.md, read from the source with `ast`."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import torch

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


def test_vqbet_imports_without_mujoco_envs_or_the_optional_readers():
    blocked = (
        "import sys; sys.modules.update(dict.fromkeys(['mujoco', 'envs', 'pyarrow', 'zarr', 'av', 'minari']))"
    )
    code = f"{blocked}; import vqbet, vqbet.pipeline, vqbet.policies; print(sorted(vqbet.policies.POLICIES))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "['bet', 'mlp', 'vqbet']"


def test_the_pipeline_is_the_top_layer():
    for file, names in imported_modules(ROOT / "vqbet").items():
        if ROOT / "vqbet" / "pipeline" not in file.parents:
            bad = {n for n in names if n.startswith(("vqbet.pipeline", "vqbet.results"))}
            assert not bad, f"{file} imports {bad}"


def test_policies_sit_below_training_and_evaluation():
    for file, names in imported_modules(ROOT / "vqbet" / "policies").items():
        bad = {n for n in names if n.startswith(("vqbet.train_policy", "vqbet.evaluate", "vqbet.report"))}
        assert not bad, f"{file} imports {bad}"


def test_tokenizer_does_not_import_policy_side():
    for name in ("tokenizer.py", "kmeans_tokenizer.py", "normalize.py", "checkpoint.py", "config.py"):
        names = imported_modules(ROOT / "vqbet")[ROOT / "vqbet" / name]
        bad = {n for n in names if n.startswith(("vqbet.polic", "vqbet.gpt", "vqbet.train"))}
        assert not bad, f"{name} imports {bad}"


def test_envs_import_no_torch_and_no_vqbet():
    for file, names in imported_modules(ROOT / "envs").items():
        bad = roots(names) & {"torch", "vqbet"}
        assert not bad, f"{file} imports {bad}"


def test_scripts_and_tests_import_no_script_and_edit_no_sys_path():
    for folder in ("scripts", "tests"):
        for file, names in imported_modules(ROOT / folder).items():
            bad = roots(names) & (SCRIPTS | {"scripts"})
            assert not bad, f"{file} imports the script(s) {bad}"
            assert not re.search(r"sys\.path\.(insert|append)", file.read_text()), file


def test_an_exported_policy_acts_with_torch_alone(tmp_path):
    from test_policy_contract import fitted

    policy, _ = fitted("vqbet")
    policy.export(tmp_path / "deploy")
    obs = torch.randn(4, 3, 2)
    torch.save(policy.predict_action_chunk(obs), tmp_path / "expected.pt")
    torch.save(obs, tmp_path / "obs.pt")
    code = (
        "import sys; sys.modules['vqbet'] = None\n"  # no vqbet at all in this process
        "import torch\n"
        f"program = torch.export.load({str(tmp_path / 'deploy' / 'program.pt2')!r}).module()\n"
        f"obs = torch.load({str(tmp_path / 'obs.pt')!r})\n"
        f"expected = torch.load({str(tmp_path / 'expected.pt')!r})\n"
        "assert torch.equal(program(obs), expected)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
