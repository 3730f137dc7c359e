"""Task heads on the LSTM states: a link scorer for node pairs, a per-node predictor.

Legend: P pairs, H state width, O outputs per node.
"""

from __future__ import annotations

import torch
from torch import nn


class LinkDecoder(nn.Module):
    """Scores node pairs from their states: ``dot`` product or a small ``mlp``.

    Shapes: ``h_u, h_v [P, H] -> [P]`` logits.
    """

    def __init__(self, hidden: int, kind: str = "dot") -> None:
        super().__init__()
        if kind not in ("dot", "mlp"):
            raise ValueError(f"LinkDecoder: kind must be 'dot' or 'mlp', got {kind!r}")
        self.kind = kind
        self.mlp = (
            nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)) if kind == "mlp" else None
        )

    def forward(self, h_u: torch.Tensor, h_v: torch.Tensor) -> torch.Tensor:
        if self.mlp is None:
            return (h_u * h_v).sum(-1)
        return self.mlp(torch.cat([h_u, h_v], dim=-1)).squeeze(-1)


class NodeHead(nn.Module):
    """Per-node prediction of the next snapshot's targets. Shapes: ``[.., H] -> [.., out_dim]``."""

    def __init__(self, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)
