"""Models, in the order data flows through them: inputs, GCN, LSTM, heads; the encoder
that composes the two stages (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from dyngnn.models.encoder import GCNLSTM
from dyngnn.models.heads import LinkDecoder, NodeHead
from dyngnn.models.inputs import GraphInput, normalize, structural_features

__all__ = ["GCNLSTM", "GraphInput", "LinkDecoder", "NodeHead", "normalize", "structural_features"]
