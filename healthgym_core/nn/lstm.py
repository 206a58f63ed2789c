"""Recurrent kernels. `ReferenceLSTM` is the upstream explicit cell (gate order F, I, A, O) unrolled in Python;
the fast path is torch's `nn.LSTM` (gate order i, f, g, o). Both give the same outputs for copied weights and
both support the gradient penalty's double backward on CPU.
"""

from __future__ import annotations

import torch
from torch import nn

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
def copy_model_weights(src: nn.Module, dst: nn.Module, layers: tuple[str, ...]) -> None:
    """Copy a generator's or critic's weights between kernels (same kernel, or reference -> native): the two
    LSTM directions gate-reordered, the named layers as they are."""
    if src.kernel == dst.kernel:
        dst.load_state_dict(src.state_dict())
        return
    if not (src.kernel == "reference" and dst.kernel == "native"):
        raise ValueError("only reference -> native copies are supported")
    copy_reference_into_native(src.lstm_f, dst.lstm, reverse=False)
    copy_reference_into_native(src.lstm_r, dst.lstm, reverse=True)
    for name in layers:
        getattr(dst, name).load_state_dict(getattr(src, name).state_dict())
