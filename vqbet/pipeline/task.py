"""A task, typed: which env (or none), which data, and the shapes every policy on it takes; with
what the jobs make from it: the env factory and the dataset as `load_dataset` reads it.

A task config (configs/task/<name>.yaml) also holds its recipe (`train_steps`, `eval_every`,
`temperature`, ...), which the hydra config interpolates into `train` and `policy`; `TaskConfig`
knows those fields too, so a typo in any key is named.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from vqbet.checks import check_ranges, config_from_dict
from vqbet.data import EpisodeData, load_dataset

POLICY_DIMENSIONS = ("obs_dim", "action_dim", "obs_window", "action_chunk", "action_relative_to")
"""The fields a task sets in every policy's config."""


@dataclass
class TaskConfig:
    """One task: configs/task/<name>.yaml, resolved."""

    name: str
    """Short name (run folders are runs/<name>/...)."""
    env_id: str | None
    """Gymnasium id of the env ("vqbet/<Task>-v0"); None for data without a simulator (offline)."""
    dataset: str
    """The demonstrations: a file, folder or Minari id that `load_dataset` reads."""
    obs_dim: int | None = None
    """D: state size (None: from the data, for a task without a simulator)."""
    action_dim: int | None = None
    """A: action size (None: from the data)."""
    obs_window: int = 5
    """To: observations a policy sees."""
    action_chunk: int = 5
    """Ta: actions per predicted chunk."""
    action_relative_to: list[int] = field(default_factory=list)
    """Per action dim, the observation index the chunk is learnt relative to (empty: absolute)."""
    default_dataset: str | None = None
    """Where the task's expert collects demonstrations when `dataset` is missing (None: never)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra `gym.make` arguments (obs_mode, cameras)."""
    obs_keys: list[str] | str | None = None
    """Observation keys `load_dataset` concatenates (None: the format's default)."""
    action_key: str | None = None
    """Action key for `load_dataset` (None: the format's default)."""
    image_keys: dict[str, str] | list[str] | str | None = None
    """Cameras `load_dataset` reads: {camera: key in the dataset}, a list of keys, or one key."""
    cameras: list[str] = field(default_factory=list)
    """The cameras a policy sees (their size comes from the data or `vision.image_size`)."""
    vision: dict[str, Any] = field(default_factory=dict)
    """VisionConfig fields for the policy's image encoders (besides `cameras`)."""
    train_steps: int = 3000
    """Recipe: phase-2 steps (train.steps)."""
    eval_every: int = 500
    """Recipe: steps between validations (train.eval_every)."""
    temperature: float = 1.0
    """Recipe: acting temperature of the code-sampling policies."""
    execute_steps: int = 0
    """Recipe: actions played per chunk (0: all)."""
    batch_size: int = 256
    """Recipe: phase-2 batch (train.batch_size)."""
    perturb: float = 0.0
    """Recipe: DART noise std on the expert's executed actions when collecting."""
    perturb_hold: int = 1
    """Recipe: steps each DART noise draw is held."""

    def __post_init__(self) -> None:
        check_ranges(self, at_least_one=("obs_window", "action_chunk"))
        if self.env_id is not None and None in (self.obs_dim, self.action_dim):
            raise ValueError(f"task {self.name}: a task with an env sets obs_dim and action_dim")
        self.cameras = list(self.cameras or [])
        self.env_kwargs = dict(self.env_kwargs or {})
        self.vision = dict(self.vision or {})

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "task") -> TaskConfig:
        """Build from a resolved task dict, naming unknown and missing keys."""
        return config_from_dict(cls, data, source)


def env_factory(env_id: str, **env_kwargs: Any) -> functools.partial:
    """`make_env(**kwargs) -> gym.Env` for a registered task with `env_kwargs` (a task config's
    `env_kwargs`: obs_mode, cameras), picklable for AsyncVectorEnv."""
    return functools.partial(_make_env, env_id, **env_kwargs)


def _make_env(env_id: str, **kwargs: Any) -> Any:
    import gymnasium as gym

    import envs  # noqa: F401  (registers the tasks)

    return gym.make(env_id, disable_env_checker=True, **kwargs)


def read_task_data(task: TaskConfig) -> EpisodeData:
    """The task's dataset as `load_dataset` reads it, with the task's keys (and cameras)."""
    return load_dataset(
        task.dataset, obs_keys=task.obs_keys, action_key=task.action_key, image_keys=task.image_keys
    )


def with_data_dims(task: TaskConfig) -> tuple[TaskConfig, EpisodeData | None]:
    """A task without a simulator (`env_id: null`, task=dataset) takes obs_dim and action_dim from
    its data, and its cameras' image size (and, unless set, a crop of 7/8 of it) from the frames:
    (the task with them filled in, the data read for it); a task with a simulator: (task, None)."""
    if task.env_id is not None:
        return task, None
    data = read_task_data(task)
    dims: dict[str, Any] = {"obs_dim": int(data.obs.shape[1]), "action_dim": int(data.action.shape[1])}
    for key, have in dims.items():
        if getattr(task, key) not in (None, have):
            raise ValueError(
                f"{task.dataset}: {key} is {have}, but the task config says {getattr(task, key)}"
            )
    missing = [c for c in task.cameras if c not in data.images]
    if missing:
        raise ValueError(
            f"{task.dataset}: task.cameras {missing} are not in the data, which has cameras "
            f"{sorted(data.images)} (task.image_keys names them: {{camera: key in the dataset}})"
        )
    sizes = {tuple(data.images[c].shape[1:3]) for c in task.cameras}
    if len(sizes) > 1:
        raise ValueError(
            f"{task.dataset}: cameras {task.cameras} differ in size {sorted(sizes)}; one size is taken"
        )
    if sizes:
        size = [int(x) for x in sizes.pop()]
        vision = dict(task.vision)
        vision["image_size"] = size
        vision.setdefault("crop", [max(4, round(7 * x / 8)) for x in size])
        if data.env_state is not None:
            vision.setdefault("env_state_dim", int(data.env_state.shape[1]))
        dims["vision"] = vision
    return dataclasses.replace(task, **dims), data
