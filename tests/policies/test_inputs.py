"""One input check for every entry point: eager select_action, predict_action_chunk and forward,
the exported folder (ExportedPolicy) and its raw program; and the export folder verified at load."""

import hashlib
import json

import numpy as np
import pytest
import torch
from policy_helpers import TA, make_policy

from vqbet.policies.export import ExportedPolicy

ENTRIES = ["select_action", "predict_action_chunk", "forward", "exported"]
FRAME = (16, 16, 3)


@pytest.fixture(scope="module")
def state_policy(tmp_path_factory):
    torch.manual_seed(0)
    policy = make_policy(n_embd=16, head_hidden=16, code_embd=4, temperature=0.0).eval()
    return policy, ExportedPolicy.load(policy.export(tmp_path_factory.mktemp("s") / "deploy", max_batch=8))


@pytest.fixture(scope="module")
def camera_policy(tmp_path_factory):
    torch.manual_seed(0)
    vision = dict(cameras=["top", "side"], image_size=[16, 16], crop=[12, 12], features=4)
    policy = make_policy(n_embd=16, head_hidden=16, code_embd=4, temperature=0.0, vision=vision).eval()
    return policy, ExportedPolicy.load(policy.export(tmp_path_factory.mktemp("c") / "deploy", max_batch=8))


def call(entry: str, policies, obs):
    """`obs` is a window (B, 3, ...) or a dict of them; select_action gets its last step."""
    policy, exported = policies
    if entry == "select_action":
        policy.reset()
        step = {k: v[:, -1] for k, v in obs.items()} if isinstance(obs, dict) else obs[:, -1]
        return policy.select_action(step)
    if entry == "predict_action_chunk":
        return policy.predict_action_chunk(obs)
    if entry == "forward":
        first = next(iter(obs.values())) if isinstance(obs, dict) else obs
        return policy({"obs": obs, "action": torch.zeros(first.shape[0], 3, TA, 2)})
    return exported.predict_action_chunk(obs)


def cameras(batch: int = 1, **override) -> dict[str, torch.Tensor]:
    frames = {name: torch.zeros(batch, 3, *FRAME, dtype=torch.uint8) for name in ("top", "side")}
    return {**frames, **override}


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_good_input_acts_alike_everywhere(entry, state_policy, camera_policy):
    state = torch.randn(2, 3, 2)
    out = call(entry, state_policy, state)
    assert (out[0] if entry == "forward" else out).isfinite().all()
    images = cameras(2)
    images["top"][:, :, 4, 4] = 255
    out = call(
        entry, camera_policy, {"state": state, **images, "unused": np.zeros((2, 3, 1))}
    )  # extras dropped
    assert (out[0] if entry == "forward" else out).isfinite().all()
    # integer states are numbers too, taken as float32
    call(entry, state_policy, np.zeros((2, 3, 2), dtype=np.int64))


@pytest.mark.parametrize("entry", ENTRIES)
def test_nan_or_inf_in_the_state_is_refused_everywhere(entry, state_policy):
    state = torch.randn(2, 3, 2)
    state[1, -1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"holds NaN or inf"):
        call(entry, state_policy, state)
    state[1, -1, 0] = float("inf")
    with pytest.raises(ValueError, match=r"holds NaN or inf"):
        call(entry, state_policy, state.numpy())


def test_the_raw_exported_program_refuses_nan_in_the_same_words(state_policy):
    program = state_policy[1].program
    state = torch.randn(2, 3, 2)
    assert program(state).isfinite().all()
    state[0, 0, 1] = float("nan")
    with pytest.raises(RuntimeError, match=r"obs holds NaN or inf"):
        program(state)


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_state_of_the_wrong_shape_or_kind_is_named_as_passed(entry, state_policy):
    shaped = (
        r"obs must have shape \(B, (T <= )?3, 2\)"
        if entry != "select_action"
        else r"obs must have shape \(B, 2\)"
    )
    with pytest.raises(
        ValueError, match=shaped + r".*got \(1, 3, 5\)" if entry != "select_action" else shaped
    ):
        call(entry, state_policy, torch.zeros(1, 3, 5))
    with pytest.raises(ValueError, match=r"obs must be an array of numbers, got <U1"):
        call(entry, state_policy, np.full((1, 3, 2), "a"))
    with pytest.raises(ValueError, match=r"an observation dict needs a 'state' entry"):
        call(entry, state_policy, {"obs": torch.zeros(1, 3, 2)})


def test_forward_refuses_nan_actions_and_actions_of_the_wrong_shape(state_policy):
    policy = state_policy[0]
    action = torch.zeros(2, 3, TA, 2)
    action[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"forward: action holds NaN or inf \(batch row\(s\) \[1\]\)"):
        policy({"obs": torch.zeros(2, 3, 2), "action": action})
    with pytest.raises(ValueError, match=r"forward: action must have shape \(B, T, 4, 2\)"):
        policy({"obs": torch.zeros(2, 3, 2), "action": action[..., :1]})


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("dtype", [torch.uint16, torch.float32])
def test_frames_that_are_not_uint8_are_refused_everywhere(entry, dtype, camera_policy):
    """Float frames in [0, 1] were read as 0-255 values (a black image); uint16 acted eagerly only."""
    frames = cameras(top=torch.ones(1, 3, *FRAME, dtype=dtype))
    lead = "1" if entry == "select_action" else "1, 3"
    named = rf"camera 'top' must be uint8 frames of shape \({lead}, 16, 16, 3\), got"
    with pytest.raises(ValueError, match=named) as error:
        call(entry, camera_policy, {"state": torch.zeros(1, 3, 2), **frames})
    assert str(dtype).removeprefix("torch.") in str(error.value)
    assert ("round(x * 255)" in str(error.value)) == dtype.is_floating_point


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_grayscale_frame_or_a_missing_camera_is_named_as_passed(entry, camera_policy):
    gray = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    passed = (1, 16, 16) if entry == "select_action" else (1, 3, 16, 16)
    with pytest.raises(
        ValueError, match=rf"camera 'side' must be uint8 .*got \({', '.join(map(str, passed))}\) uint8"
    ):
        call(entry, camera_policy, {"state": torch.zeros(1, 3, 2), **cameras(side=gray)})
    with pytest.raises(
        ValueError, match=r"camera\(s\) \['side'\] missing: the policy sees \['side', 'top'\]"
    ):
        call(entry, camera_policy, {"state": torch.zeros(1, 3, 2), "top": cameras()["top"]})
    with pytest.raises(ValueError, match=r"camera\(s\) \['side', 'top'\] missing"):
        call(entry, camera_policy, torch.zeros(1, 3, 2))


def test_goals_are_checked_eagerly_and_exported(tmp_path):
    torch.manual_seed(0)
    policy = make_policy(
        n_embd=16, head_hidden=16, code_embd=4, temperature=0.0, goal_conditioning="prepend", goal_dim=3
    ).eval()
    exported = ExportedPolicy.load(policy.export(tmp_path / "deploy", max_batch=8))
    state, goal = torch.randn(2, 3, 2), torch.randn(2, 3)
    torch.testing.assert_close(
        exported.predict_action_chunk(state, goal), policy.predict_action_chunk(state, goal)
    )
    for acting in (policy, exported):
        with pytest.raises(ValueError, match=r"goal-conditioned: pass goal \(B, 3\)"):
            acting.predict_action_chunk(state)
        with pytest.raises(ValueError, match=r"goal must have shape \(2, 3\), got \(2, 4\)"):
            acting.predict_action_chunk(state, torch.zeros(2, 4))
        with pytest.raises(ValueError, match=r"goal holds NaN or inf"):
            acting.predict_action_chunk(state, torch.full((2, 3), float("nan")))
    with pytest.raises(RuntimeError, match=r"goal holds NaN or inf"):
        exported.program(state, torch.full((2, 3), float("inf")))


def test_an_export_is_verified_against_its_config_at_load(state_policy, tmp_path):
    policy = state_policy[0]
    folder = policy.export(tmp_path / "deploy", max_batch=8)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "obs_dim": 3}))
    with pytest.raises(ValueError, match=r"config.json: the fields .*no longer describe program.pt2"):
        ExportedPolicy.load(folder)
    (folder / "config.json").write_text(json.dumps(config))
    ExportedPolicy.load(folder)
    program = folder / "program.pt2"
    data = program.read_bytes()
    program.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match=rf"{program} is damaged or was replaced: its sha256"):
        ExportedPolicy.load(folder)
    # a file whose digests were rewritten to match: torch's error, named with the file
    digest = hashlib.sha256(program.read_bytes()).hexdigest()
    from vqbet.policies.export import _interface_digest

    config.update(program_sha256=digest, interface_sha256=_interface_digest(digest, config))
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"{program} is not a loadable exported program: "):
        ExportedPolicy.load(folder)
