"""MuJoCo Gymnasium tasks of vqbet, registered as "vqbet/<Task>-v0" on import.

Imports only gymnasium, mujoco and numpy: demonstrations can be collected without torch.
"""

from gymnasium.envs.registration import register

TASKS = {
    "MultiReach": ("envs.multireach:MultiReachEnv", 200),
    "BlockPush": ("envs.blockpush:BlockPushEnv", 350),
}

for _name, (_entry, _steps) in TASKS.items():
    register(id=f"vqbet/{_name}-v0", entry_point=_entry, max_episode_steps=_steps)
