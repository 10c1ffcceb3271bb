"""Minari interop (local and offline, HDF5 backend only): export a vqbet dataset as a Minari dataset
and read a Minari dataset into the same in-memory form.

Minari stores T+1 observations per episode (the last one after the final action); vqbet stores T.
Export appends the episode's last observation once more; import drops the final observation. vqbet's
metadata travels as JSON in the Minari description.

Dict observations (Gymnasium-Robotics' goal-conditioned tasks, e.g. D4RL's Franka Kitchen with
`observation`, `achieved_goal` and `desired_goal`, the goals a dict per sub-task) are flattened to
one state vector: the keys named in `obs_keys` ("achieved_goal/microwave" for a nested one) are
concatenated in that order; by default `observation` alone, which for D4RL kitchen is exactly
vqbet/Kitchen-v0's 59-D state (the goals repeat the object joints, or are constant).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vqbet.data.episodes import EpisodeData

DESCRIPTION_PREFIX = "vqbet dataset; attrs="


@contextlib.contextmanager
def _datasets_root(root: str | os.PathLike | None) -> Iterator[None]:
    """Point Minari at `root` for the duration of a call (Minari reads MINARI_DATASETS_PATH)."""
    if root is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _minari() -> Any:
    try:
        import minari
    except ImportError:
        raise ImportError(
            "Minari interop needs the 'minari[hdf5]' package: pip install 'minari[hdf5]'"
        ) from None
    return minari


def export_minari(
    data: EpisodeData, dataset_id: str, *, root: str | os.PathLike | None = None, env_id: str | None = None
) -> Path:
    """Write `data` as Minari dataset `dataset_id` (e.g. "vqbet/blockpush/expert-v0") under `root`
    (default: Minari's own folder). Returns the dataset's folder."""
    minari = _minari()
    from gymnasium.spaces import Box
    from minari.data_collector import EpisodeBuffer

    buffers = []
    for index in range(data.num_episodes):
        episode = data.episode(index)
        obs = np.concatenate([episode["obs"], episode["obs"][-1:]]).astype(np.float32)
        steps = len(episode["action"])
        buffers.append(
            EpisodeBuffer(
                id=index,
                observations=obs,
                actions=np.asarray(episode["action"], dtype=np.float32),
                rewards=np.zeros(steps),
                terminations=np.eye(1, steps, steps - 1, dtype=bool)[0],
                truncations=np.zeros(steps, dtype=bool),
                infos={},
            )
        )
    spaces = {
        "observation_space": Box(-np.inf, np.inf, (data.obs.shape[1],), np.float32),
        "action_space": Box(-np.inf, np.inf, (data.action.shape[1],), np.float32),
    }
    with _datasets_root(root):
        dataset = minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=env_id,
            algorithm_name=str(data.attrs.get("expert", "unknown")),
            description=DESCRIPTION_PREFIX + json.dumps(data.attrs, sort_keys=True, default=str),
            data_format="hdf5",
            **({} if env_id else spaces),
        )
        return Path(dataset.spec.data_path).parent


DEFAULT_DICT_KEYS = ("observation",)


def flat_observations(observations: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Arrays (T+1, d) of a (possibly nested) dict observation by "key/subkey" name."""
    if not isinstance(observations, dict):
        array = np.asarray(observations)
        return {prefix: array.reshape(len(array), -1)}
    flat: dict[str, np.ndarray] = {}
    for key, value in observations.items():
        flat.update(flat_observations(value, f"{prefix}/{key}" if prefix else str(key)))
    return flat


def state_from_observations(observations: Any, obs_keys: list[str] | None, where: str) -> np.ndarray:
    """The flat state (T+1, D): a Box observation as it is, a dict one as its `obs_keys`
    (default `observation`) concatenated in order."""
    if not isinstance(observations, dict):
        if obs_keys and list(obs_keys) != ["obs"]:
            raise ValueError(
                f"{where}: observations are one flat Box ('obs'); obs_keys {obs_keys} do not apply"
            )
        return np.asarray(observations)
    flat = flat_observations(observations)
    keys = list(obs_keys or DEFAULT_DICT_KEYS)
    missing = [k for k in keys if k not in flat]
    if missing:
        raise ValueError(f"{where}: observation keys {missing} not found; the dataset has {sorted(flat)}")
    return np.concatenate([flat[k] for k in keys], axis=1)


def read_minari(
    dataset_id: str, *, root: str | os.PathLike | None = None, obs_keys: list[str] | None = None
) -> EpisodeData:
    """Read local Minari dataset `dataset_id` (never downloads) into an EpisodeData; dict
    observations become the concatenation of `obs_keys` (see the module doc)."""
    minari = _minari()
    from gymnasium.spaces import Dict

    with _datasets_root(root):
        try:
            dataset = minari.load_dataset(dataset_id, download=False)
        except (FileNotFoundError, ValueError) as err:
            raise FileNotFoundError(f"Minari dataset {dataset_id!r} not found locally: {err}") from None
    episodes = []
    for episode in dataset.iterate_episodes():
        where = f"Minari dataset {dataset_id!r}, episode {episode.id}"
        obs = state_from_observations(episode.observations, obs_keys, where).astype(np.float32)
        actions = np.asarray(episode.actions, dtype=np.float32)
        if obs.ndim != 2 or actions.ndim != 2:
            raise ValueError(
                f"Minari dataset {dataset_id!r}: only flat Box observations and actions are supported, "
                f"got shapes {obs.shape} and {actions.shape}"
            )
        episodes.append({"obs": obs[: len(actions)], "action": actions})
    description = str(dataset.storage.metadata.get("description") or "")
    attrs: dict[str, Any] = {}
    if description.startswith(DESCRIPTION_PREFIX):
        attrs = json.loads(description[len(DESCRIPTION_PREFIX) :])
    if isinstance(dataset.observation_space, Dict):
        attrs["obs_keys"] = list(obs_keys or DEFAULT_DICT_KEYS)
    data = EpisodeData.from_episodes(episodes, attrs=attrs)
    data.source = f"minari:{dataset_id}"
    return data
