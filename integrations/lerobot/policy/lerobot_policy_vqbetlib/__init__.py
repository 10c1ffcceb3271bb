"""vqbet's policies as a LeRobot policy plug-in: `lerobot-train --policy.type=vqbetlib`.

LeRobot imports this package at start-up (its name starts with `lerobot_policy_`), which registers
`VQBetLibConfig` under "vqbetlib"; LeRobot finds `VQBetLibPolicy` in `modeling_vqbetlib` and the
processors in `processor_vqbetlib` by naming convention, importing them only when used.
"""

from lerobot_policy_vqbetlib.configuration_vqbetlib import VQBetLibConfig, VQBetLibSchedulerConfig

__all__ = ["VQBetLibConfig", "VQBetLibSchedulerConfig"]
