"""Recurrent kernels and the one bidirectional block both networks use.

`ReferenceLSTM` is the upstream explicit cell (gate order F, I, A, O) unrolled in Python; `native` is torch's
`nn.LSTM` (gate order i, f, g, o); `fused` computes nn.LSTM's maths on nn.LSTM's own weights with the C++ kernel of
`healthgym_core.nn.fused` (CPU; hand-written first and second derivatives). All give the same outputs for copied
weights and all support the gradient penalty's double backward on CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from healthgym_core.nn import fused

KERNELS = ("native", "reference", "fused")
# Position in the upstream (F, I, A, O) chunk order of each torch (i, f, g, o) gate.
TORCH_FROM_REFERENCE = (1, 0, 2, 3)


class ReferenceLSTM(nn.Module):
    """Upstream `MyLSTM`: i2h and h2h linear maps with bias, zero initial state, Python time loop."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.i2h = nn.Linear(input_size, 4 * hidden_size)
        self.h2h = nn.Linear(hidden_size, 4 * hidden_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b = x.shape[0]
        h = x.new_zeros(b, self.hidden_size)
        c = x.new_zeros(b, self.hidden_size)
        xi = self.i2h(x)  # all time steps at once: same maths as per-step i2h
        outputs = []
        for x_t in xi.unbind(1):
            h, c = self.cell(x_t, h, c)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h, c)

    def cell(self, x_gates: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step from the input's gate pre-activations i2h(x_t): the new (h, c)."""
        f_i, i_i, a_i, o_i = x_gates.chunk(4, dim=-1)
        f_h, i_h, a_h, o_h = self.h2h(h).chunk(4, dim=-1)
        f = torch.sigmoid(f_i + f_h)
        i = torch.sigmoid(i_i + i_h)
        a = torch.tanh(a_i + a_h)
        o = torch.sigmoid(o_i + o_h)
        c = f * c + i * a
        return o * torch.tanh(c), c


class BiLSTM(nn.Module):
    """A forward and a time-reversed single-layer LSTM over the same [B, T, in] input, on one of `KERNELS`.

    `native` and `fused` keep their weights in an `nn.LSTM(bidirectional=True)` (so their state dicts, and the
    checkpoints, are interchangeable); `reference` in two `ReferenceLSTM`s.
    """

    def __init__(self, input_size: int, hidden_size: int, kernel: str = "native") -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}")
        self.hidden_size, self.kernel = hidden_size, kernel
        if kernel == "reference":
            self.lstm_f = ReferenceLSTM(input_size, hidden_size)
            self.lstm_r = ReferenceLSTM(input_size, hidden_size)
        else:
            self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, aligned: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, in] -> (h_f, h_r), each [B, T, H].

        h_r in upstream order: position t holds the reverse state after x_{T-1}..x_{T-1-t} (upstream never flips
        it back). With `aligned`, in time order: position t after x_{T-1}..x_t (a standard biLSTM, nn.LSTM's).
        """
        if self.kernel == "reference":
            h_f, _ = self.lstm_f(x)
            h_r, _ = self.lstm_r(x.flip(1))
            return h_f, (h_r.flip(1) if aligned else h_r)
        if self.kernel == "fused":
            h_f, h_r = fused.bidirectional(self.lstm, x)  # [T, B, H] each, h_r in time order
            return h_f.transpose(0, 1), (h_r if aligned else h_r.flip(0)).transpose(0, 1)
        out, _ = self.lstm(x)
        h_f, h_r = out[..., : self.hidden_size], out[..., self.hidden_size :]
        return h_f, (h_r if aligned else h_r.flip(1))

    def final(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, in] -> [B, 2H]: the forward state after x_{T-1} next to the reverse state after x_0."""
        if self.kernel == "reference":
            _, (h_f, _) = self.lstm_f(x)
            _, (h_r, _) = self.lstm_r(x.flip(1))
            return torch.cat([h_f, h_r], dim=-1)
        if self.kernel == "fused":
            h_f, h_r = fused.bidirectional(self.lstm, x)
            return torch.cat([h_f[-1], h_r[0]], dim=-1)
        _, (h_n, _) = self.lstm(x)
        return torch.cat([h_n[0], h_n[1]], dim=-1)

    @torch.no_grad()
    def copy_from(self, src: BiLSTM) -> None:
        """Take another block's weights: same kernel as they are, reference -> native gate-reordered."""
        if src.kernel == self.kernel:
            self.load_state_dict(src.state_dict())
        elif src.kernel == "reference" and self.kernel != "reference":
            copy_reference_into_native(src.lstm_f, self.lstm, reverse=False)
            copy_reference_into_native(src.lstm_r, self.lstm, reverse=True)
        else:
            raise ValueError("only reference -> native copies are supported")


def torch_gate_order(w: torch.Tensor) -> torch.Tensor:
    """Re-order a reference cell's (F, I, A, O) gate rows into nn.LSTM's (i, f, g, o)."""
    chunks = w.chunk(4, dim=0)
    return torch.cat([chunks[k] for k in TORCH_FROM_REFERENCE], dim=0)


@torch.no_grad()
def copy_reference_into_native(ref: ReferenceLSTM, native: nn.LSTM, reverse: bool) -> None:
    """Copy a reference cell's weights into one direction of an `nn.LSTM` (single layer)."""
    sfx = "_l0_reverse" if reverse else "_l0"
    getattr(native, "weight_ih" + sfx).copy_(torch_gate_order(ref.i2h.weight))
    getattr(native, "weight_hh" + sfx).copy_(torch_gate_order(ref.h2h.weight))
    getattr(native, "bias_ih" + sfx).copy_(torch_gate_order(ref.i2h.bias))
    getattr(native, "bias_hh" + sfx).copy_(torch_gate_order(ref.h2h.bias))


@torch.no_grad()
def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy a generator's or critic's weights into another of the same shape, whatever the two kernels: each
    `BiLSTM` through `BiLSTM.copy_from`, every other top-level layer as it is."""
    for name, child in dst.named_children():
        source = getattr(src, name)
        if isinstance(child, BiLSTM):
            child.copy_from(source)
        else:
            child.load_state_dict(source.state_dict())
