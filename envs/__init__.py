"""MuJoCo Gymnasium tasks of vqbet, registered as "vqbet/<Task>-v0" on import.

Imports only gymnasium, mujoco and numpy: demonstrations can be collected without torch.
"""

import os

# Headless machines render offscreen through EGL unless the user chose a backend (or has a display).
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

from gymnasium.envs.registration import register

TASKS = {
    "MultiReach": ("envs.multireach:MultiReachEnv", 200),
    "BlockPush": ("envs.blockpush:BlockPushEnv", 350),
    "PushT": ("envs.pusht:PushTEnv", 600),
    "Kitchen": ("envs.kitchen:KitchenEnv", 600),  # 48 s at 12.5 steps/s; needs "vqbet[kitchen]"
}

for _name, (_entry, _steps) in TASKS.items():
    register(id=f"vqbet/{_name}-v0", entry_point=_entry, max_episode_steps=_steps)
