"""What the two PyTorch models share: the sequence encoder, batching and reproducible CPU training.

The encoder reads an attempt's raw events (:func:`pipelines.keystrokes.features.sequences`): embeddings of the
character and of the cursor position (so the network can learn what each position's latency usually is) and
four numbers per event (standardised log gap, backspace, cursor position, correction start) through a GRU over
the packed sequence; its final hidden states and the mean of its outputs over the events are the summary. Training is
reproducible: a budget in epochs, seeds fixed (torch and the batch order), a fixed number of intra-op threads
(one by default: the matrices are small, and the machine is shared); a wall-clock cap is only a safety net
whose hitting is reported.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from pipelines.keystrokes.features import N_SEQ_FEATURES, PAD, VOCAB, L

#: Cursor positions embedded (a position past the phrase's end shares the last one).
MAX_POSITION = L + 2


class SequenceEncoder(nn.Module):
    """Events → a fixed-width vector (``out_dim``): character and cursor-position embeddings with the numbers,
    through a GRU over the packed sequence (both directions' final states when bidirectional)."""

    def __init__(self, hidden: int = 64, char_dim: int = 16, position_dim: int = 8, bidirectional: bool = True,
                 layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.chars = nn.Embedding(VOCAB, char_dim, padding_idx=PAD)
        self.positions = nn.Embedding(MAX_POSITION + 1, position_dim)
        self.gru = nn.GRU(char_dim + position_dim + N_SEQ_FEATURES, hidden, num_layers=layers, batch_first=True,
                          bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.directions = 2 if bidirectional else 1
        self.out_dim = 2 * self.directions * hidden

    def forward(self, ids: torch.Tensor, num: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        position = (num[..., 2] * L).round().long().clamp(0, MAX_POSITION)
        x = torch.cat([self.chars(ids), self.positions(position), num], dim=-1)
        packed = pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
        out, h = self.gru(packed)  # h: (layers * directions, b, hidden)
        out, _ = pad_packed_sequence(out, batch_first=True)  # (b, T, directions * hidden)
        mask = (torch.arange(out.shape[1])[None, :] < lengths.clamp(min=1)[:, None]).unsqueeze(-1)
        mean = (out * mask).sum(dim=1) / lengths.clamp(min=1)[:, None]
        return torch.cat([*h[-self.directions:], mean], dim=-1)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def batch(seq: tuple[np.ndarray, np.ndarray, np.ndarray], idx: np.ndarray
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows ``idx`` of padded sequences, trimmed to their longest (as tensors)."""
    ids, num, lengths = seq
    width = max(1, int(lengths[idx].max(initial=1)))
    return (torch.from_numpy(np.ascontiguousarray(ids[idx, :width])),
            torch.from_numpy(np.ascontiguousarray(num[idx, :width])),
            torch.from_numpy(np.ascontiguousarray(lengths[idx])))


class Budget:
    """Counts epochs/steps and watches the wall-clock safety cap."""

    def __init__(self, time_cap_s: float) -> None:
        self.cap = float(time_cap_s)
        self.started = time.perf_counter()
        self.hit = False

    def exceeded(self) -> bool:
        if time.perf_counter() - self.started > self.cap:
            self.hit = True
        return self.hit

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.started, 3)


def embed_all(fn, seq: tuple[np.ndarray, np.ndarray, np.ndarray], batch_size: int = 512) -> np.ndarray:
    """``fn(ids, num, lengths)`` over every row in batches, without gradients, as one float32 array."""
    n = len(seq[2])
    out = []
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            idx = np.arange(lo, min(lo + batch_size, n))
            out.append(fn(*batch(seq, idx)).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
