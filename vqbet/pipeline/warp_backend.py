"""eval.backend=warp: an evaluation's rollouts in MuJoCo Warp worlds (envs.warp), with the records,
summary and tiled video of the CPU backend. envs.warp (and with it Warp) is imported only here and
only when called: `check_backend` names an unsupported task before anything loads or compiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vqbet.evaluation.batched import WorldVideo, evaluate_batched
from vqbet.pipeline.config import EvalConfig
from vqbet.policies import Policy


def check_backend(eval_cfg: EvalConfig, env_id: str) -> None:
    """ValueError naming `env_id` when eval.backend=warp and MuJoCo Warp does not run that task."""
    if eval_cfg.backend == "warp":
        from envs.warp import check_task

        check_task(env_id)


def evaluate_on_warp(
    policy: Policy, env_id: str, eval_cfg: EvalConfig, out_dir: Path, env_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """`eval_cfg.episodes` episodes of `policy` on `env_id` in min(num_envs, episodes) Warp worlds
    (on the GPU when Warp sees one, else Warp's CPU device with a warning), writing
    out_dir/rollouts.mp4 of the first `video_episodes` worlds drawn by the CPU model. Returns
    evaluate_batched's {"episodes", "summary"} plus "backend": {"name", "device", "num_envs"}."""
    from envs.warp import make_vector_env

    check_backend(eval_cfg, env_id)
    num_envs = min(eval_cfg.num_envs, eval_cfg.episodes)
    envs = make_vector_env(env_id, num_envs, autoreset_mode="Disabled", **env_kwargs)
    try:
        if policy.config.vision.cameras or envs.single_observation_space.shape[0] != policy.config.obs_dim:
            raise ValueError(
                f"{env_id} on Warp observes a state of {envs.single_observation_space.shape[0]} and no "
                f"camera; the policy takes {policy.config.obs_dim} and cameras {policy.config.vision.cameras}"
            )
        video = None
        if eval_cfg.video_episodes > 0:
            video = WorldVideo(
                envs.render_worlds, min(eval_cfg.video_episodes, num_envs), out_dir / "rollouts.mp4"
            )
        try:
            result = evaluate_batched(policy, envs, eval_cfg.episodes, eval_cfg.first_seed, on_step=video)
        finally:
            if video is not None:
                video.close()
        result["backend"] = {"name": "warp", "device": str(envs.device), "num_envs": num_envs}
    finally:
        envs.close()
    return result
