"""configs/: every task x policy composes, resolves its task recipe and builds a policy."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vqbet.pipeline import build_policy

ROOT = Path(__file__).resolve().parents[2]


def built(cfg):
    return build_policy(OmegaConf.to_container(cfg, resolve=True))


RECIPES = {"multireach": (3000, 500, 1.0), "blockpush": (8000, 1000, 0.3), "pusht": (8000, 1000, 0.6)}


@pytest.mark.parametrize("task", sorted(RECIPES))
@pytest.mark.parametrize("policy", ["vqbet", "bet", "mlp", "ar"])
def test_task_recipe_reaches_training_and_acting(task, policy):
    steps, every, temperature = RECIPES[task]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"task={task}", f"policy={policy}"])
        assert (cfg.train.steps, cfg.train.eval_every, cfg.train.checkpoint_every) == (steps, every, every)
        made = built(cfg)
        assert made.config.obs_dim == cfg.task.obs_dim
        assert made.name == cfg.policy.get("family", cfg.policy.name)
        if policy == "bet":  # a named configuration: VQ-BeT's heads over 64 k-means bins
            assert made.name == "vqbet" and made.tokenizer.tokenizer_type == "kmeans"
            assert made.tokenizer.config.num_bins == 64 and cfg.policy.name == "bet"
        if policy != "mlp":
            assert made.config.temperature == temperature  # the task's acting temperature
        # A command-line override still wins over the recipe.
        cfg = compose("train", overrides=[f"task={task}", f"policy={policy}", "train.steps=7"])
        assert cfg.train.steps == 7 and cfg.train.eval_every == every
        if policy != "mlp":
            cfg = compose("train", overrides=[f"task={task}", f"policy={policy}", "policy.temperature=0"])
            assert built(cfg).config.temperature == 0


@pytest.mark.parametrize("tokenizer", sorted(p.stem for p in (ROOT / "configs" / "tokenizer").glob("*.yaml")))
def test_every_tokenizer_config_builds_a_policy_over_its_family_and_checks_whole(tokenizer):
    """Code heads over every fixed-length family; the autoregressive policy over FAST."""
    from vqbet.pipeline import check_run_config
    from vqbet.tokenizers import tokenizer_class

    policy = "ar" if tokenizer_class(tokenizer).variable_length else "vqbet"
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["task=kitchen", f"policy={policy}", f"tokenizer={tokenizer}"])
        if policy == "ar":
            vqbet = compose("train", overrides=["task=kitchen", "policy=vqbet", f"tokenizer={tokenizer}"])
            with pytest.raises(ValueError, match="use policy=ar"):
                built(vqbet)
    made = built(cfg)
    assert type(made.tokenizer) is tokenizer_class(tokenizer) and cfg.tokenizer.name == tokenizer
    assert (made.tokenizer.config.chunk_size, made.tokenizer.config.action_dim) == (10, 9)
    run = check_run_config(OmegaConf.to_container(cfg, resolve=True), build_policy)
    assert run.task.name == "kitchen" and run.tokenizer_fit is not None


@pytest.mark.parametrize("config", ["train", "collect"])
def test_blockpush_collects_dart_demonstrations_and_the_others_clean(config):
    def collect_cfg(task):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(config, overrides=[f"task={task}"])
        return cfg.collect if config == "train" else cfg

    blockpush = collect_cfg("blockpush")
    assert (blockpush.perturb, blockpush.perturb_hold) == (0.03, 5)
    for task in ("multireach", "pusht"):
        clean = collect_cfg(task)
        assert (clean.perturb, clean.perturb_hold) == (0.0, 1)
