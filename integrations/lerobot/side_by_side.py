"""Score LeRobot checkpoints on vqbet's tasks the way vqbet scores its own: success with its 95%
interval, the sub-goal completion orders and their entropy, acting time at batch 1, training
samples/s. Run with LeRobot's Python, with both plug-ins installed (docs/lerobot.md):

    python integrations/lerobot/side_by_side.py evaluate <pretrained_model> --env-type vqbetlib_multireach \
        --env obs_type=pixels_state observation_width=32 observation_height=32 \
        --episodes 100 --first-seed 1000000 --train-log <lerobot-train's log> --out <name>.json
    python integrations/lerobot/side_by_side.py table <name>.json [<name>.json ...]
    python integrations/lerobot/side_by_side.py progress <lerobot-train output dir> --steps N --batch B

`evaluate` runs LeRobot's own processing (preprocess_observation, the env and policy processors)
and the policy's `select_action` over `lerobot.envs.make_env` vector envs, as `lerobot-eval` does,
and keeps from each finished episode's info what `eval_info.json` drops: `order`. Episode i is
seeded `first_seed + i`. Acting time: the mean over 200 steps of one env of the processors plus
`select_action` (replanning steps included), after 20 warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch

from vqbet.evaluation.metrics import order_entropy, wilson_interval

SAMPLES_PER_S = re.compile(r"smp/s:([0-9.]+)")


def _load(path: Path, env_type: str, env_options: dict[str, str], n_envs: int) -> tuple[Any, ...]:
    """(vector env, policy, env preprocessor, env postprocessor, preprocessor, postprocessor)."""
    from lerobot.configs import PreTrainedConfig
    from lerobot.envs import make_env, make_env_config, make_env_pre_post_processors
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    env_cfg = make_env_config(env_type, **{k: _value(v) for k, v in env_options.items()})
    policy_cfg = PreTrainedConfig.from_pretrained(path)
    policy_cfg.pretrained_path = path
    policy_cfg.device = "cpu"
    envs = make_env(env_cfg, n_envs=n_envs)
    env = next(iter(next(iter(envs.values())).values()))
    policy = make_policy(policy_cfg, env_cfg=env_cfg)
    pre, post = make_pre_post_processors(policy_cfg, pretrained_path=str(path))
    env_pre, env_post = make_env_pre_post_processors(env_cfg=env_cfg, policy_cfg=policy_cfg)
    return env, policy.eval(), env_pre, env_post, pre, post


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _act(
    env: Any, policy: Any, env_pre: Any, env_post: Any, pre: Any, post: Any, observation: Any
) -> np.ndarray:
    """Actions (n_envs, A) for a vector env's observation, through LeRobot's processing."""
    from lerobot.envs.utils import preprocess_observation

    batch = preprocess_observation(observation)
    try:
        batch["task"] = list(env.call("task_description"))
    except (AttributeError, NotImplementedError):
        batch["task"] = [""] * env.num_envs
    batch = pre(env_pre(batch))
    with torch.inference_mode():
        action = post(policy.select_action(batch))
    return env_post({"action": action})["action"].to("cpu").numpy()


def _final_info(info: dict[str, Any]) -> dict[str, Any]:
    """The info of the step an episode ended (vector envs move it to "final_info")."""
    return info.get("final_info", info)


def _finished(info: dict[str, Any], key: str, i: int) -> Any:
    """Env i's `key` at the step its episode ended."""
    return _final_info(info)[key][i]


def rollouts(env: Any, parts: tuple, episodes: int, first_seed: int) -> list[dict[str, Any]]:
    """One episode per env per round, seeded first_seed + i, until `episodes` have ended; `parts`:
    (policy, env preprocessor, env postprocessor, preprocessor, postprocessor)."""
    policy = parts[0]
    out: list[dict[str, Any]] = []
    n = env.num_envs
    while len(out) < episodes:
        seeds = [first_seed + len(out) + i for i in range(n)]
        policy.reset()
        observation, _ = env.reset(seed=seeds)
        done = np.zeros(n, dtype=bool)
        ended: list[dict[str, Any] | None] = [None] * n
        while not done.all():
            action = _act(env, *parts, observation)
            observation, _, terminated, truncated, info = env.step(action)
            for i in np.flatnonzero((terminated | truncated) & ~done):
                order = _finished(info, "order", i)
                ended[i] = {
                    "seed": seeds[i],
                    "success": bool(_finished(info, "is_success", i)),
                    "order": [int(x) for x in order],
                }
                if "max_coverage" in _final_info(info):  # PushT's graded progress
                    ended[i]["max_coverage"] = float(_finished(info, "max_coverage", i))
            done |= terminated | truncated
        out.extend(e for e in ended if e is not None)
    return out[:episodes]


def acting_ms(env: Any, parts: tuple, steps: int = 200, warmup: int = 20) -> float:
    """Mean ms per step of one env's processors + select_action (not the simulator)."""
    parts[0].reset()
    observation, _ = env.reset(seed=0)
    total = 0.0
    for step in range(warmup + steps):
        start = time.perf_counter()
        action = _act(env, *parts, observation)
        if step >= warmup:
            total += time.perf_counter() - start
        observation, _, terminated, truncated, _ = env.step(action)
        if terminated.any() or truncated.any():
            parts[0].reset()
    return 1000 * total / steps


def samples_per_s(log: Path) -> float | None:
    """The median of lerobot-train's logged samples/s over the second half of the run."""
    rates = [float(x) for x in SAMPLES_PER_S.findall(log.read_text(errors="replace"))]
    return float(np.median(rates[len(rates) // 2 :])) if rates else None


def progress(run: Path, steps: int, batch: int) -> int | None:
    """Steps done by the lerobot-train run in `run` (None: no checkpoint yet), checked against the
    steps and batch asked for, so a resumption never continues another protocol's run."""
    last = run / "checkpoints" / "last"
    state = last / "training_state" / "training_step.json"
    if not state.is_file():
        return None
    config_file = last / "pretrained_model" / "train_config.json"
    try:
        config = json.loads(config_file.read_text())
        done = int(json.loads(state.read_text())["step"])
        trained = (int(config["steps"]), int(config["batch_size"]))
    except (OSError, ValueError, KeyError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{last}: not a lerobot-train checkpoint ({error!r})") from error
    if trained != (steps, batch):
        raise ValueError(
            f"{last} was trained for {trained[0]} steps at batch {trained[1]}, "
            f"not {steps} at batch {batch}: pass those, or another out dir"
        )
    return done


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    options = dict(item.split("=", 1) for item in args.env)
    env, *parts = _load(args.checkpoint, args.env_type, options, args.batch)
    episodes = rollouts(env, tuple(parts), args.episodes, args.first_seed)
    env.close()
    one, *parts_one = _load(args.checkpoint, args.env_type, options, 1)
    ms = acting_ms(one, tuple(parts_one))
    one.close()
    wins = sum(e["success"] for e in episodes)
    low, high = wilson_interval(wins, len(episodes))
    orders = [tuple(e["order"]) for e in episodes if e["success"]]
    return {
        "checkpoint": str(args.checkpoint),
        "policy": json.loads((args.checkpoint / "config.json").read_text())["type"],
        "env_type": args.env_type,
        "env": options,
        "episodes": episodes,
        "success": wins / len(episodes),
        "success_interval": [low, high],
        "orders": len(set(orders)),
        "order_entropy": order_entropy(orders) if orders else 0.0,
        "max_coverage": _mean_of(episodes, "max_coverage"),
        "acting_ms_batch1": ms,
        "train_samples_per_s": samples_per_s(args.train_log) if args.train_log else None,
        "label": args.label or args.checkpoint.parent.parent.parent.name,
    }


def _mean_of(episodes: list[dict[str, Any]], key: str) -> float | None:
    """The mean of the episodes' `key`, None when no episode has it."""
    values = [e[key] for e in episodes if key in e]
    return float(np.mean(values)) if values else None


def table(files: list[Path]) -> str:
    results = [json.loads(file.read_text()) for file in files]
    coverage = any(r.get("max_coverage") is not None for r in results)
    head = ["policy", "success (95% CI)", "orders", "order entropy"]
    head += ["mean max coverage"] * coverage + ["acting ms, batch 1", "training samples/s"]
    rows = [head, ["---"] * len(head)]
    for r in results:
        low, high = r["success_interval"]
        row = [
            r["label"],
            f"{r['success']:.2f} ({low:.2f}-{high:.2f})",
            str(r["orders"]),
            f"{r['order_entropy']:.3f}",
        ]
        if coverage:
            row.append("-" if r.get("max_coverage") is None else f"{r['max_coverage']:.3f}")
        rate = r["train_samples_per_s"]
        row += [f"{r['acting_ms_batch1']:.2f}", "-" if rate is None else f"{rate:.0f}"]
        rows.append(row)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate")
    ev.add_argument("checkpoint", type=Path, help="a pretrained_model folder lerobot-train saved")
    ev.add_argument("--env-type", required=True)
    ev.add_argument("--env", nargs="*", default=[], help="env options key=value (LeRobot's --env.<key>)")
    ev.add_argument("--episodes", type=int, default=100)
    ev.add_argument("--first-seed", type=int, default=1_000_000)
    ev.add_argument("--batch", type=int, default=50, help="envs stepped together")
    ev.add_argument("--threads", type=int, default=2)
    ev.add_argument("--train-log", type=Path, help="lerobot-train's output, for samples/s")
    ev.add_argument("--label", default="")
    ev.add_argument("--out", type=Path, required=True)
    tb = sub.add_parser("table")
    tb.add_argument("files", type=Path, nargs="+")
    pr = sub.add_parser("progress", help="print 'fresh', 'done' or the step a run resumes at")
    pr.add_argument("run", type=Path, help="a lerobot-train --output_dir")
    pr.add_argument("--steps", type=int, required=True)
    pr.add_argument("--batch", type=int, required=True)
    args = parser.parse_args()
    if args.command == "table":
        print(table(args.files))
        return 0
    if args.command == "progress":
        try:
            done = progress(args.run, args.steps, args.batch)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print("fresh" if done is None else "done" if done >= args.steps else done)
        return 0
    result = evaluate(args)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table([args.out]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
