"""LSTM (Hochreiter & Schmidhuber, 1997) and GRU (Cho et al., 2014) classifiers over a sequence.

Every input is read as a sequence of T steps of F features:
  (C, H, W) images -> H steps (rows) of C * W features: 8x8 digits are 8 steps of 8 pixels
  (T, F) sequences -> T steps of F features
  (F,) vectors     -> F steps of 1 feature
The features are the last layer's final hidden state: its state after the last step, and when bidirectional also the
backward direction's state after the first step (the end of its reading), concatenated. reg.dropout applies
between stacked layers and before the head; reg.batchnorm does not apply (BatchNorm is not defined across steps).
"""

from __future__ import annotations

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.registry import Net, register_model

RNNS = {"lstm": nn.LSTM, "gru": nn.GRU}


def sequence_shape(in_shape: tuple[int, ...]) -> tuple[int, int]:
    """(T, F): time steps and features per step for an input of in_shape."""
    if len(in_shape) == 3:
        channels, height, width = in_shape
        return height, channels * width
    if len(in_shape) == 2:
        return in_shape[0], in_shape[1]
    if len(in_shape) == 1:
        return in_shape[0], 1
    raise DlrunError(f"model=lstm / model=gru read (C, H, W), (T, F) or (F,) inputs; "
                     f"the dataset gives {tuple(in_shape)}")


class SequenceFeatures(nn.Module):
    """(N, *in_shape) -> (N, T, F) -> recurrent layers -> (N, hidden_size * directions) -> dropout."""

    def __init__(self, rnn: nn.RNNBase, dropout: float):
        super().__init__()
        self.rnn = rnn
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # (N, C, H, W) -> (N, H, C, W) -> (N, H, C * W): one row per step
            x = x.permute(0, 2, 1, 3).flatten(2)
        elif x.dim() == 2:  # (N, F) -> (N, F, 1)
            x = x.unsqueeze(-1)
        _, state = self.rnn(x)  # state: (layers * directions, N, hidden); the LSTM adds the cell state
        hidden = state[0] if isinstance(state, tuple) else state
        directions = 2 if self.rnn.bidirectional else 1
        last_layer = hidden[-directions:]  # (directions, N, hidden), forward first
        return self.dropout(torch.cat(tuple(last_layer), dim=1))  # (N, hidden * directions)


@register_model("lstm", "gru")
def build_recurrent(cfg, in_shape: tuple[int, ...], num_outputs: int, reg) -> Net:
    """An LSTM or GRU (cfg.family) of cfg.num_layers layers of cfg.hidden_size units, bidirectional on request."""
    _, step_features = sequence_shape(in_shape)
    rnn = RNNS[cfg.family](
        input_size=step_features,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        bidirectional=cfg.bidirectional,
        batch_first=True,
        # dropout between stacked layers (Zaremba et al., 2014); PyTorch warns if it is set with a single layer
        dropout=reg.dropout if cfg.num_layers > 1 else 0.0,
    )
    directions = 2 if cfg.bidirectional else 1
    return Net(SequenceFeatures(rnn, reg.dropout), nn.Linear(cfg.hidden_size * directions, num_outputs))
