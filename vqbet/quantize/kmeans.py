"""Lloyd's k-means on a batch of vectors, used to initialise codebooks (and by the BeT baseline)."""

from __future__ import annotations

import torch
from torch import Tensor

from vqbet.quantize.common import nearest_code


def kmeans(
    x: Tensor,
    num_clusters: int,
    *,
    iters: int = 10,
    cosine: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Cluster x (N, D) into `num_clusters` centres.

    Returns (centres (K, D), counts (K,)). Centres start at distinct random rows of x (with
    replacement only when N < K); a cluster that empties keeps its previous centre, so every centre
    stays on the data. With `cosine`, rows and centres are kept on the unit sphere.
    """
    x = x.detach().float()
    n = x.shape[0]
    if n == 0:
        raise ValueError("kmeans: x has no rows")
    if cosine:
        x = torch.nn.functional.normalize(x, dim=-1)
    if n >= num_clusters:
        idx = torch.randperm(n, generator=generator, device="cpu")[:num_clusters]
    else:
        idx = torch.randint(n, (num_clusters,), generator=generator, device="cpu")
    centres = x[idx.to(x.device)].clone()
    counts = torch.zeros(num_clusters, device=x.device)
    for _ in range(iters):
        codes, _ = nearest_code(x, centres)
        counts = torch.bincount(codes, minlength=num_clusters).float()
        sums = torch.zeros_like(centres).index_add_(0, codes, x)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        if cosine:
            centres = torch.nn.functional.normalize(centres, dim=-1)
    return centres, counts
