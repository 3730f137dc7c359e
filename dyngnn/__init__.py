"""dyngnn: temporal GNN training on dynamic graphs stored as keyframes plus edge deltas."""

from __future__ import annotations

__version__ = "0.1.0"
