"""History sensitivity (vqbet.evaluation.history, scripts/diagnose.py history): a policy that copies
its past velocity moves in proportion to the history's speed, one that does not is unmoved by it;
the caller's random state stays; a policy without relative actions is refused by name."""

import importlib.util
from pathlib import Path

import pytest
import torch
from policy_helpers import TA, two_mode_data

from vqbet.data import TrajectoryWindows
from vqbet.evaluation.history import history_sensitivity
from vqbet.policies import policy_class

ROOT = Path(__file__).resolve().parents[2]


def mlp(relative: bool = True):
    fields = dict(obs_dim=2, action_dim=2, obs_window=3, action_chunk=TA)
    return policy_class("mlp").build({**fields, "action_relative_to": [0, 1] if relative else []})


def test_a_copycat_moves_with_its_history_and_a_reactive_policy_does_not(monkeypatch):
    windows = TrajectoryWindows(two_mode_data(episodes=12), obs_window=3, action_chunk=TA)
    policy = mlp()
    steps = torch.arange(1, TA + 1, dtype=torch.float32)[None, :, None]

    def copycat(obs, goal=None):  # keeps going at the window's last velocity
        return obs[:, -1:] + steps * (obs[:, -1:] - obs[:, -2:-1])

    monkeypatch.setattr(policy, "predict_action_chunk", copycat)
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    out = history_sensitivity(policy, windows, factors=(0.0, 0.5, 1.0, 2.0), samples=2)
    assert torch.equal(torch.rand(2), expected)
    ratio = out["motion_ratio"]
    assert ratio[0.0] == pytest.approx(0.0, abs=1e-6) and ratio[0.5] == pytest.approx(0.5, rel=1e-5)
    assert ratio[2.0] == pytest.approx(2.0, rel=1e-5) and out["windows"] == len(windows)
    batch = torch.utils.data.default_collate([windows[i] for i in range(len(windows))])
    last = batch["obs"][:, -1:, :]
    assert out["demonstrated"] == pytest.approx(float((batch["action"][:, -1] - last).norm(dim=-1).mean()))

    monkeypatch.setattr(policy, "predict_action_chunk", lambda obs, goal=None: obs[:, -1:] + steps * 0.1)
    out = history_sensitivity(policy, windows, factors=(0.0, 1.0), samples=1)
    assert out["motion_ratio"][0.0] == pytest.approx(1.0)


def test_a_policy_without_relative_actions_or_a_folder_without_a_run_is_named(tmp_path):
    windows = TrajectoryWindows(two_mode_data(episodes=4), obs_window=3, action_chunk=TA)
    with pytest.raises(ValueError, match=r"needs a policy whose actions are relative .* 'mlp' has none"):
        history_sensitivity(mlp(relative=False), windows)
    spec = importlib.util.spec_from_file_location("diagnose", ROOT / "scripts" / "diagnose.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(FileNotFoundError, match=r"config.yaml: not a training run folder"):
        script.diagnose("history", tmp_path)
