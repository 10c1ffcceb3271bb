"""Evaluation: vectorised seeded rollouts, metrics, failure handling."""

import math

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.experts import make_expert
from vqbet.evaluation.metrics import order_entropy, summarize, wilson_interval
from vqbet.evaluation.rollouts import evaluate


class ExpertPolicy:
    """The scripted expert behind the policy interface, one expert per sub-environment."""

    def __init__(self, created: list):
        self.created, self.experts, self.count = created, [], 0

    def reset(self, done=None):
        if done is None:
            self.experts = []
            return
        for i in np.flatnonzero(done):
            self.experts[i] = self._new(i)

    def _new(self, i):
        self.count += 1
        expert = make_expert(self.created[i], seed=self.count)
        expert.reset()
        return expert

    def select_action(self, obs):
        while len(self.experts) < len(obs):
            self.experts.append(self._new(len(self.experts)))
        return np.stack([e.act(o) for e, o in zip(self.experts, obs, strict=True)])


def test_metrics_on_hand_made_records():
    assert order_entropy([(0, 1)] * 2 + [(1, 0)] * 2) == pytest.approx(math.log(2))
    assert order_entropy([(0, 1)] * 5) == 0.0 and str(order_entropy([(0, 1)] * 5)) == "0.0"  # not -0.0
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    records = [
        {"success": True, "length": 10, "order": [0, 1], "p1": True},
        {"success": True, "length": 20, "order": [1, 0], "p1": True},
        {"success": False, "length": 30, "order": [1], "p1": True},
        {"success": False, "length": 40, "p1": False},
    ]
    s = summarize(records, num_modes=2)
    assert s["success_rate"] == 0.5 and s["mean_length"] == 25 and s["mean_p1"] == 0.75
    assert s["median_success_length"] == 15  # of the two successes only
    assert "median_success_length" not in summarize(records[2:])
    assert s["order_entropy"] == pytest.approx(math.log(2)) and s["order_entropy_fraction"] == pytest.approx(
        1.0
    )


@pytest.mark.parametrize("task", ["MultiReach", "BlockPush"])
def test_evaluate_with_expert_reproduces_expert_success(task):
    created = []

    def make_env():
        env = gym.make(f"vqbet/{task}-v0", disable_env_checker=True)
        created.append(env)
        return env

    result = evaluate(ExpertPolicy(created), make_env, n_episodes=12, seed=500, num_envs=4, progress=False)
    assert len(result["episodes"]) == 12
    assert sorted(e["seed"] for e in result["episodes"]) == list(range(500, 512))
    assert result["summary"]["success_rate"] == 1.0
    assert result["summary"]["distinct_orders"] >= 2


class NaNOnce(gym.Wrapper):
    """Makes the simulation blow up on the 3rd step of the episode started with seed 701."""

    def reset(self, **kwargs):
        self.steps, self.poison = 0, kwargs.get("seed") == 701
        return self.env.reset(**kwargs)

    def step(self, action):
        self.steps += 1
        if self.poison and self.steps == 3:
            self.env.unwrapped.data.qvel[:] = np.nan
        return self.env.step(action)


def test_nan_episode_is_a_failure_and_evaluation_goes_on():
    created = []

    def make_env():
        env = NaNOnce(gym.make("vqbet/MultiReach-v0", disable_env_checker=True))
        created.append(env)
        return env

    result = evaluate(ExpertPolicy(created), make_env, n_episodes=4, seed=700, num_envs=2, progress=False)
    by_seed = {e["seed"]: e for e in result["episodes"]}
    assert by_seed[701]["unstable"] and not by_seed[701]["success"] and by_seed[701]["length"] == 3
    assert all(by_seed[s]["success"] for s in (700, 702, 703))
    assert result["summary"]["success_rate"] == 0.75


@pytest.mark.parametrize("perturb", [0.0, 0.03])
def test_write_report_keeps_results_and_says_what_the_expert_reference_is(tmp_path, perturb):
    import json

    from vqbet.evaluation.report import write_report

    summary = summarize(
        [{"success": True, "length": 10, "order": (0, 1)}, {"success": False, "length": 20, "order": ()}],
        num_modes=2,
    )
    results = {
        "policy": "vqbet",
        "env_id": "vqbet/BlockPush-v0",
        "eval_seed": 1_000_000,
        "summary": summary,
        "expert_success_rate": 0.93,
        "expert_order_entropy": 0.69,
        "demonstrations_perturb": perturb,
    }
    write_report(tmp_path, results)
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    report = (tmp_path / "report.md").read_text()
    assert "success: **0.50**" in report and "seeds 1000000..1000001" in report
    assert ("DART-perturbed collection, noise std 0.03" in report) == (perturb > 0)


class FewerKeys(gym.Wrapper):
    """A task variant that declares fewer progress keys."""

    progress_keys = ("goals_reached",)


def test_records_keep_the_progress_keys_the_env_declares():
    created = []

    def make_env(wrapped: bool):
        env = gym.make("vqbet/MultiReach-v0", disable_env_checker=True)
        env = FewerKeys(env) if wrapped else env
        created.append(env)
        return env

    for wrapped, keys in ((False, {"goals_reached", "p1", "p2", "p3", "p4"}), (True, {"goals_reached"})):
        created.clear()
        result = evaluate(
            ExpertPolicy(created), lambda w=wrapped: make_env(w), 2, 900, num_envs=2, progress=False
        )
        for record in result["episodes"]:
            assert set(record) - {"seed", "success", "length", "unstable", "order"} == keys
