"""Randomness keyed by ``(seed, epoch, snapshot)``, never drawn from the global RNG.

The same draws come out however the work is split: over ranks, over chunks recomputed
in the backward pass, or across a resume.
"""

from __future__ import annotations

import torch


def keyed_generator(device: torch.device, *key: int) -> torch.Generator:
    """A generator whose stream depends only on ``key`` (e.g. seed, epoch, snapshot)."""
    g = torch.Generator(device=device)
    seed = 0
    for k in key:  # a fixed, order-sensitive mix of the key into 63 bits
        seed = (seed * 0x9E3779B97F4A7C15 + int(k) + 0x632BE59BD9B4E019) % (2**63 - 1)
    g.manual_seed(seed)
    return g


def keyed_dropout(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout of ``x`` with probability ``p``, its mask drawn from ``generator``."""
    if p == 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= p
    return x * keep / (1.0 - p)
