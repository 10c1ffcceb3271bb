"""vqbet's tasks as LeRobot env types: importing this package (LeRobot does at start-up, as it does
every installed "lerobot_env_*" distribution) registers `vqbetlib_multireach`,
`vqbetlib_blockpush`, `vqbetlib_pusht` and `vqbetlib_kitchen` (configs.py) and their gym ids
"lerobot_env_vqbetlib/<Task>-v0" (env.py). MuJoCo loads only when an env is made."""

from gymnasium.envs.registration import register, registry

from lerobot_env_vqbetlib.configs import (
    VqbetlibBlockPushEnv,
    VqbetlibEnv,
    VqbetlibKitchenEnv,
    VqbetlibMultiReachEnv,
    VqbetlibPushTEnv,
)
from lerobot_env_vqbetlib.specs import OBS_TYPES, TASKS

for _spec in TASKS.values():
    if _spec.gym_id not in registry:  # gymnasium warns on a second registration of an id
        register(
            id=_spec.gym_id,
            entry_point="lerobot_env_vqbetlib.env:make_task_env",
            kwargs={"task": _spec.name},
            max_episode_steps=_spec.episode_length,
        )

__all__ = [
    "OBS_TYPES",
    "TASKS",
    "VqbetlibBlockPushEnv",
    "VqbetlibEnv",
    "VqbetlibKitchenEnv",
    "VqbetlibMultiReachEnv",
    "VqbetlibPushTEnv",
]
