"""The contract every registered policy family passes: phase 1 and a loss, bit-exact save/load
(also through `load_policy`), acting shapes, per-environment resets, clear errors on wrong
shapes. A fourth family defined here in a few lines joins the contract by registering itself."""

import json
import subprocess
import sys
from dataclasses import asdict, dataclass

import numpy as np
import pytest
import torch
from policy_helpers import TA, two_mode_data
from torch import nn

from vqbet.data import TrajectoryWindows
from vqbet.policies import POLICIES, Policy, PolicyConfig, load_policy, policy_class, register_policy
from vqbet.tokenizers.fit import TokenizerFitConfig


@dataclass
class LinearConfig(PolicyConfig):
    """A linear map from the observation window to the chunk."""


@register_policy("test_linear")
class LinearPolicy(Policy):
    """The smallest complete family: what a new family has to write."""

    config_class = LinearConfig

    def __init__(self, config: LinearConfig) -> None:
        super().__init__(config)
        c = config
        self.net = nn.Linear(c.obs_dim, c.action_chunk * c.action_dim)

    @property
    def network(self) -> nn.Module:
        return self.net

    def _chunk(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.obs_normalizer.normalize(obs[:, -1])).view(-1, self.config.action_chunk, 2)

    def forward(self, batch):
        obs, action = self.check_batch(batch)
        loss = (self._chunk(obs) - action[:, -1]).square().mean()
        return loss, {"loss": loss.item()}

    def _predict_chunk(self, obs, goal):
        return self._chunk(obs)


FAMILIES = sorted(POLICIES)
SMALL = {
    "vqbet": dict(n_layer=1, n_head=2, n_embd=32, head_hidden=32, code_embd=8, dropout=0.0, temperature=0.0),
    "mlp": dict(hidden=32, depth=2),
    "ar": dict(n_layer=1, n_head=2, n_embd=32, dropout=0.0, temperature=0.0),
}
TOKENIZERS = {
    "rvq": dict(num_layers=2, codebook_size=8, latent_dim=16, hidden_dim=32),
    "fsq": dict(num_layers=1, fsq_levels=[5, 3], latent_dim=16, hidden_dim=32),
    "kmeans": dict(num_bins=8),
    "bins": dict(num_bins=16),
    "fast": dict(vocab_size=64),
}
CASES = FAMILIES + [f"vqbet:{t}" for t in ("fsq", "kmeans", "bins")] + [f"ar:{t}" for t in ("kmeans", "fast")]
"""Every family (families over tokens with rvq), and the code heads over every other fixed-length
tokenizer, the autoregressive policy over a one-token and the variable-length one."""


def family(case: str) -> str:
    return case.split(":")[0]


def fitted(case: str, **extra) -> tuple[Policy, TrajectoryWindows]:
    name, _, tokenizer = case.partition(":")
    if tokenizer == "fast":
        pytest.importorskip("tokenizers")
    torch.manual_seed(0)
    windows = TrajectoryWindows(two_mode_data(episodes=20), obs_window=3, action_chunk=TA)
    fields = dict(obs_dim=2, action_dim=2, obs_window=3, action_chunk=TA, **SMALL.get(name, {}), **extra)
    tokenizer = tokenizer or "rvq"
    policy = policy_class(name).build(fields, {"name": tokenizer, **TOKENIZERS[tokenizer]})
    policy.fit_statistics(windows, seed=0, tokenizer_fit=TokenizerFitConfig(steps=20), progress=False)
    policy.freeze_statistics()
    return policy.eval(), windows


def test_every_family_is_in_the_contract():
    assert {"vqbet", "mlp", "ar", "test_linear"} <= set(FAMILIES)


@pytest.mark.parametrize("name", CASES)
def test_phase_one_and_a_finite_loss_with_gradients(name):
    policy, windows = fitted(name)
    assert bool(policy.obs_normalizer.fitted)
    batch = torch.utils.data.default_collate([windows[i] for i in range(8)])
    loss, metrics = policy.train()(batch)
    loss.backward()
    assert torch.isfinite(loss) and metrics["loss"] == pytest.approx(loss.item())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.network.parameters())


@pytest.mark.parametrize("name", CASES)
def test_save_load_is_bit_exact_and_acts_identically(tmp_path, name):
    policy, _ = fitted(name)
    policy.metadata["task"] = {"env_id": "vqbet/MultiReach-v0"}
    path = policy.save_pretrained(tmp_path / "ckpt")
    meta = json.loads((path / "config.json").read_text())
    assert meta["family"] == family(name) and meta["policy"] == asdict(policy.config)
    for loaded in (load_policy(path), type(policy).from_pretrained(path)):
        assert type(loaded) is type(policy) and loaded.metadata == policy.metadata
        state, again = policy.state_dict(), loaded.state_dict()
        assert state.keys() == again.keys()
        assert all(torch.equal(state[k], again[k]) for k in state)
        obs = np.random.default_rng(1).normal(size=(3, 2)).astype(np.float32)
        policy.reset()
        loaded.reset()
        for step in range(2 * TA):
            torch.manual_seed(step)
            a = policy.select_action(obs + 0.1 * step)
            torch.manual_seed(step)
            assert torch.equal(a, loaded.select_action(obs + 0.1 * step))
    other = next(cls for n, cls in POLICIES.items() if not isinstance(policy, cls))
    with pytest.raises(ValueError, match=f"a '{family(name)}' checkpoint, not a {other.__name__}"):
        other.from_pretrained(path)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("execution", ["queue", "ensemble"])
def test_acting_shapes_and_per_env_reset(name, execution):
    policy, _ = fitted(name, execution=execution)
    obs = np.random.default_rng(2).normal(size=(TA + 2, 2, 2)).astype(np.float32)
    assert policy.predict_action_chunk(obs[:3].transpose(1, 0, 2)).shape == (2, TA, 2)  # numpy in
    for t in range(3):
        assert policy.select_action(torch.from_numpy(obs[t])).shape == (2, 2)
    policy.reset(np.array([True, False]))
    after_reset = policy.select_action(obs[3])
    fresh, _ = fitted(name, execution=execution)
    torch.testing.assert_close(after_reset[0], fresh.select_action(obs[3][:1])[0])  # env 0 starts over
    fresh.reset()
    for t in range(4):
        expected = fresh.select_action(obs[t][1:])
    torch.testing.assert_close(after_reset[1], expected[0])  # env 1 keeps its history


@pytest.mark.parametrize("name", CASES)
def test_wrong_shapes_are_clear_errors(name):
    policy, windows = fitted(name)
    with pytest.raises(ValueError, match=r"select_action: obs must have shape \(B, 2\)"):
        policy.select_action(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"obs must have shape \(B, T <= 3, 2\)"):
        policy.predict_action_chunk(np.zeros((2, 4, 2), np.float32))
    policy.select_action(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"reset\(done\): done must have shape \(2,\)"):
        policy.reset(np.array([True, False, True]))
    batch = torch.utils.data.default_collate([windows[i] for i in range(4)])
    with pytest.raises(ValueError, match=r"action must have shape \(B, T, 4, 2\)"):
        policy({"obs": batch["obs"], "action": batch["action"][..., :1]})
    with pytest.raises(ValueError, match="a batch needs 'obs' and 'action'"):
        policy({"obs": batch["obs"]})


def test_registry_names_what_it_knows():
    with pytest.raises(ValueError, match=r"unknown policy family 'diffusion'; registered: \['ar', 'mlp', "):
        policy_class("diffusion")
    with pytest.raises(ValueError, match="already registered"):
        register_policy("mlp")(LinearPolicy)
    assert policy_class("test_linear") is LinearPolicy


@pytest.mark.parametrize("model_type, version", [("vqbet.VQBeTPolicy", 1), ("vqbet.policy", 1)])
def test_a_checkpoint_of_another_format_is_refused_with_its_format_named(tmp_path, model_type, version):
    policy, _ = fitted("vqbet")
    path = policy.save_pretrained(tmp_path / "ckpt")
    meta = json.loads((path / "config.json").read_text())
    meta.update(model_type=model_type, format_version=version)
    (path / "config.json").write_text(json.dumps(meta))
    named = (
        rf"not a vqbet policy checkpoint of format 2 \(model_type='{model_type}', format_version={version}\)"
    )
    with pytest.raises(ValueError, match=named):
        load_policy(path)


def test_a_folder_whose_config_json_is_another_frameworks_loads_from_vqbet_json(tmp_path):
    """A LeRobot plug-in checkpoint: LeRobot's config.json, vqbet's own config in vqbet.json."""
    policy, _ = fitted("vqbet:fsq")
    path = policy.save_pretrained(tmp_path / "ckpt")
    (path / "config.json").rename(path / "vqbet.json")
    (path / "config.json").write_text(json.dumps({"type": "vqbetlib", "n_obs_steps": 3}))
    loaded = load_policy(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in policy.state_dict().items())
    (path / "vqbet.json").write_text("{}")
    with pytest.raises(ValueError, match=r"vqbet\.json: not a vqbet policy checkpoint"):
        load_policy(path)


@pytest.mark.parametrize("name", CASES)
def test_the_exported_program_acts_like_the_eager_policy(name, tmp_path):
    from vqbet.policies.export import ExportedPolicy

    policy, _ = fitted(name)
    if getattr(getattr(policy, "tokenizer", None), "variable_length", False):
        with pytest.raises(ValueError, match="cannot trace: it acts eagerly"):
            policy.export(tmp_path / "deploy", max_batch=64)
        return
    folder = policy.export(tmp_path / "deploy", max_batch=64)
    acting = ExportedPolicy.load(folder)
    for batch in (1, 5):
        obs = torch.randn(batch, 3, 2)
        expected = policy.predict_action_chunk(obs)
        assert torch.equal(acting.predict_action_chunk(obs.numpy()), expected)  # any batch, no recompile
    with pytest.raises(
        ValueError, match=r"config.json: obs must have shape \(B, 3, 2\) with 1 <= B <= 64, got \(1, 3, 4\)"
    ):
        acting.predict_action_chunk(torch.zeros(1, 3, 4))


def test_the_exported_program_samples_with_the_policys_min_p(tmp_path):
    from vqbet.policies.export import ExportedPolicy

    policy, _ = fitted("vqbet")
    policy.config.temperature, policy.config.min_p = 1.0, 0.999  # only the likeliest code is left
    acting = ExportedPolicy.load(policy.export(tmp_path / "deploy", max_batch=64))
    obs = torch.randn(64, 3, 2)
    exported = acting.predict_action_chunk(obs)
    policy.config.temperature = 0.0
    assert torch.equal(exported, policy.predict_action_chunk(obs))


def test_the_compiled_package_acts_like_the_eager_policy(tmp_path):
    """AOTInductor: native code for this CPU, every batch size, equal up to float rounding."""
    from vqbet.policies.export import ExportedPolicy

    policy, _ = fitted("vqbet")
    policy.config.temperature = 0.0  # greedy: the same codes, so the chunks compare
    acting = ExportedPolicy.load(policy.export(tmp_path / "deploy", max_batch=64, compiled=True))
    for batch in (1, 5, 64):
        obs = torch.randn(batch, 3, 2)
        torch.testing.assert_close(acting.predict_action_chunk(obs), policy.predict_action_chunk(obs))


def test_a_compiled_package_of_another_torch_is_refused_by_name(tmp_path):
    from vqbet.policies.export import ExportedPolicy, _interface_digest

    policy, _ = fitted("mlp")
    folder = policy.export(tmp_path / "deploy", max_batch=4)
    meta = json.loads((folder / "config.json").read_text())
    meta.update(compiled=True, torch="2.0.0")
    meta.update(interface_sha256=_interface_digest(meta["program_sha256"], meta))  # as if made so
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"compiled with torch 2\.0\.0 runs only with that version"):
        ExportedPolicy.load(folder)


def test_an_export_replaces_nothing_unasked(tmp_path):
    policy, _ = fitted("mlp")
    folder = policy.export(tmp_path / "deploy", max_batch=4)
    program = (folder / "program.pt2").read_bytes()
    with pytest.raises(FileExistsError, match=r"deploy exists: pass overwrite=True"):
        policy.export(folder, max_batch=4)
    assert (folder / "program.pt2").read_bytes() == program
    assert policy.export(folder, max_batch=8, overwrite=True) == folder
    assert json.loads((folder / "config.json").read_text())["max_batch"] == 8
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt is a file; an export is a folder"):
        policy.export(tmp_path / "notes.txt", overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_exported_policy_acts_with_torch_alone(tmp_path):
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


def test_a_bet_checkpoint_of_the_former_family_loads_as_vqbet_over_kmeans(tmp_path):
    """BeT is a named configuration of the vqbet family; checkpoints saved as family "bet" (with
    num_bins and kmeans_iters in the policy config) load as that and act the same."""
    torch.manual_seed(0)
    windows = TrajectoryWindows(two_mode_data(episodes=20), obs_window=3, action_chunk=TA)
    fields = dict(obs_dim=2, action_dim=2, obs_window=3, action_chunk=TA, **SMALL["vqbet"])
    policy = policy_class("vqbet").build(fields, {"name": "kmeans", "num_bins": 8})
    policy.fit_statistics(windows, seed=0, progress=False)
    path = policy.eval().save_pretrained(tmp_path / "bet")
    meta = json.loads((path / "config.json").read_text())
    meta["family"] = "bet"
    meta["policy"].update(num_bins=8, kmeans_iters=50)
    (path / "config.json").write_text(json.dumps(meta))
    loaded = load_policy(path)
    assert loaded.name == "vqbet" and loaded.tokenizer.tokenizer_type == "kmeans"
    obs = torch.randn(6, 3, 2)
    assert torch.equal(loaded.predict_action_chunk(obs), policy.predict_action_chunk(obs))
