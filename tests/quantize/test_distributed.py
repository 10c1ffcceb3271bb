"""Codebooks stay identical on every rank under torch.distributed (2 gloo processes on CPU)."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqbet.quantize import ResidualVQ


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # same initial weights on every rank
        rvq = ResidualVQ(
            dim=4, codebook_size=16, num_layers=2, ema=True, kmeans_init=True, dead_code_threshold=2.0
        )
        data = torch.Generator().manual_seed(100 + rank)  # each rank sees different data
        torch.manual_seed(1000 + rank)  # and draws different random numbers for re-seeding
        for _ in range(30):
            rvq(torch.randn(64, 4, generator=data) * (1 + rank))
        torch.save({k: v.clone() for k, v in rvq.state_dict().items()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_codebooks_identical_across_ranks(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (a["layers.0.usage"] > 0).any()
