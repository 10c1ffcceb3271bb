"""DDP training (2 gloo processes on CPU) equals single-process training on the same global batch."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from policy_helpers import make_policy, two_mode_data

from vqbet import TokenizerFitConfig, fit_tokenizer
from vqbet.data import TrajectoryWindows
from vqbet.training.loop import PolicyTrainConfig, StepBatchSampler, train_policy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(run_dir: str) -> dict:
    torch.manual_seed(0)
    data = two_mode_data()
    windows = TrajectoryWindows(data, obs_window=3, action_chunk=4)
    policy = make_policy()  # dropout 0: the random streams of the ranks do not matter
    fit_tokenizer(policy.tokenizer, windows.action_chunks(), TokenizerFitConfig(steps=30), progress=False)
    policy.obs_normalizer.fit(torch.from_numpy(data.obs))
    cfg = PolicyTrainConfig(
        steps=12,
        batch_size=32,
        lr=3e-3,
        warmup_steps=2,
        eval_every=6,
        checkpoint_every=6,
        log_every=3,
        device="cpu",
        amp=False,  # float32: bf16 rounds a global batch differently from its two halves
    )
    train_policy(policy, windows, None, cfg, run_dir, progress=False)
    return {k: v.clone() for k, v in policy.state_dict().items()}


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    try:
        state = train(f"{out_dir}/ddp")
        assert dist.is_initialized() and dist.get_world_size() == world  # training joined the group
        torch.save(state, f"{out_dir}/rank{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_two_process_ddp_matches_single_process(tmp_path, monkeypatch):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for key in a:
        assert torch.equal(a[key], b[key]), key  # ranks stay bit-identical
    assert (tmp_path / "ddp" / "checkpoints" / "last" / "model.safetensors").is_file()  # rank 0 wrote it

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    single = train(str(tmp_path / "single"))
    for key in a:
        if a[key].is_floating_point():
            # Adam divides by sqrt(v): where a gradient is ~0, the rounding of two half-batch sums
            # against one full sum moves a weight by up to ~1e-5 per step (a missing all-reduce
            # would move every weight by ~lr = 3e-3).
            torch.testing.assert_close(a[key], single[key], rtol=1e-4, atol=1e-4, msg=key)
        else:
            assert torch.equal(a[key], single[key]), key


def test_sampler_shards_the_global_batch():
    single = list(StepBatchSampler(100, 8, seed=3, start=0, stop=30))
    shards = [list(StepBatchSampler(100, 8, seed=3, start=0, stop=30, rank=r, world=2)) for r in range(2)]
    for step, batch in enumerate(single):
        a, b = shards[0][step], shards[1][step]
        assert len(a) == len(b) == 4 and not set(a) & set(b)
        assert sorted(a + b) == sorted(batch)
    resumed = list(StepBatchSampler(100, 8, seed=3, start=17, stop=30, rank=1, world=2))
    assert resumed == shards[1][17:]
