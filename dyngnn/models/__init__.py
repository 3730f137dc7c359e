"""Models: the temporal GCN-LSTM encoder and its task heads."""

from __future__ import annotations

from dyngnn.models.gcn_lstm import GCNLSTM, GraphInput, LinkDecoder, NodeHead, normalize, structural_features

__all__ = ["GCNLSTM", "GraphInput", "LinkDecoder", "NodeHead", "normalize", "structural_features"]
