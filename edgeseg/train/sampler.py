"""A resumable, rank-sharded infinite sampler.

Training is iteration-based (paper: 640k iterations), so the sampler is a pure function of the
global sample position g: epoch = g // n picks a seeded permutation and the sample's own
augmentation seed is derived from (seed, g). Resuming at iteration i restarts at
g = i * global_batch and reproduces the uninterrupted run's batches exactly, whatever the
number of DataLoader workers. Ranks take every world-th position, the same sharding as
torch's DistributedSampler, so N processes with batch B see the samples one process with
batch N*B would.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableDistributedSampler", "sample_seed"]


def sample_seed(seed: int, position: int) -> int:
    # splitmix-style mixing keeps neighbouring positions' streams unrelated
    z = (seed * 0x9E3779B97F4A7C15 + position + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFF


class ResumableDistributedSampler(Sampler[tuple[int, int]]):
    """Yields (dataset index, augmentation seed) for global positions start, start+1, ...

    Args:
        size: dataset length.
        seed: run seed.
        start: first global position (iteration * global batch when resuming).
        rank, world_size: this process's shard.
    """

    def __init__(self, size: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1):
        if size <= 0:
            raise ValueError("empty dataset")
        self.size, self.seed, self.start = size, seed, start
        self.rank, self.world_size = rank, world_size

    def _perm(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.size, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pos = self.start + self.rank
        epoch, perm = -1, []
        while True:
            e = pos // self.size
            if e != epoch:
                epoch, perm = e, self._perm(e)
            yield perm[pos % self.size], sample_seed(self.seed, pos)
            pos += self.world_size
