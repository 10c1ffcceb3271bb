"""LeRobot's processor pipelines for vqbetlib: rename, batch, device; the normaliser steps are
identity (vqbet normalises inside the policy with the statistics it fitted in phase 1), so the
saved processors carry no statistics that could disagree with the policy's."""

from __future__ import annotations

from typing import Any

import torch
from lerobot.processor import PolicyAction, PolicyProcessorPipeline, make_default_pre_post_processors

from lerobot_policy_vqbetlib.configuration_vqbetlib import VQBetLibConfig


def make_vqbetlib_pre_post_processors(
    config: VQBetLibConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """(preprocessor, postprocessor) as LeRobot's defaults, with `config`'s identity normalisation."""
    return make_default_pre_post_processors(config, dataset_stats)
