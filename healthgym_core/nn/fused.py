"""The `fused` LSTM kernel: nn.LSTM's maths over a whole sequence in a few C++ calls, with exact first and second
derivatives (the critic's gradient penalty differentiates its backward).

The C++ source (`fused_lstm.cpp`) is compiled at first use with torch's own headers and cached; the build is named
by a hash of the source, the torch version and the compiler flags, so a cached build is never stale, and torch's
file lock makes concurrent processes (Ray workers) wait for one build instead of each compiling. Where it cannot
be built (no compiler), `available()` says why in one line and the networks use nn.LSTM. The derivation is in
docs/fused_lstm.md.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

SOURCE = Path(__file__).with_name("fused_lstm.cpp")
OPS = "healthgym_fused_lstm"
STALE_LOCK_S = 600  # a build took 24 s on the project's 2-core machine (bench/README.md)
_state: dict = {}


def _flags() -> list[str]:
    """Vector width of the machine torch itself runs at (its `at::vec` headers pick the instructions from it)."""
    cap = torch.backends.cpu.get_cpu_capability()
    if cap.startswith("AVX512"):
        return [
            "-DCPU_CAPABILITY=AVX512",
            "-DCPU_CAPABILITY_AVX512",
            "-mavx512f",
            "-mavx512bw",
            "-mavx512vl",
            "-mavx512dq",
            "-mfma",
        ]
    if cap.startswith("AVX2"):
        return ["-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma"]
    return ["-DCPU_CAPABILITY=DEFAULT", "-DCPU_CAPABILITY_DEFAULT"]


def build_name() -> str:
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(torch.__version__.encode())
    h.update(" ".join(_flags()).encode())
    return f"healthgym_fused_lstm_{h.hexdigest()[:12]}"


def _load() -> None:
    """Load the cached build, or compile it (once per machine; other processes wait on torch's lock)."""
    from torch.utils import cpp_extension

    name = build_name()
    folder = Path(os.environ.get("HEALTHGYM_EXTENSIONS", cpp_extension._get_build_directory(name, verbose=False)))
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / f"{name}.so"
    if library.is_file():
        torch.ops.load_library(str(library))
        return
    lock = folder / "lock"  # torch's build lock; a build killed midway leaves it, and every later process would wait
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
        lock.unlink(missing_ok=True)
    cpp_extension.load(
        name=name,
        sources=[str(SOURCE)],
        build_directory=str(folder),
        is_python_module=False,
        extra_cflags=["-O3", *_flags()],
        verbose=False,
    )


def available() -> str | None:
    """None when the kernel is loaded (building it if needed), else the one-line reason it cannot be."""
    if "error" not in _state:
        try:
            _load()
            _state["error"] = None
        except Exception as e:  # noqa: BLE001 - no compiler, no ninja, a failed build: fall back to nn.LSTM
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
            _state["error"] = f"the fused LSTM kernel could not be built ({type(e).__name__}: {first})"
    return _state["error"]


def _ops():
    if available() is not None:
        raise RuntimeError(_state["error"])
    return getattr(torch.ops, OPS)


class Recurrence(torch.autograd.Function):
    """h [T, B, H] from gx [T, B, 4H] (input projection + both biases) and w [4H, H] (weight_hh)."""

    @staticmethod
    def forward(ctx, gx: torch.Tensor, w: torch.Tensor, reverse: bool) -> torch.Tensor:
        h, c, k, gates = _ops().forward(gx.contiguous(), w, reverse)
        ctx.save_for_backward(gx, w)
        # Detached: the backward's own backward differentiates them through gx and w; an autograd edge to the output
        # would only send it zeros (a wasted backward of this whole recurrence).
        ctx.saved = (h.detach(), c, k, gates)
        ctx.reverse = reverse
        return h

    @staticmethod
    def backward(ctx, dh: torch.Tensor):
        gx, w = ctx.saved_tensors
        keep = torch.is_grad_enabled()  # a create_graph backward: the double backward may come and needs dc, dh
        d_gx, d_w = RecurrenceBackward.apply(dh, gx, w, ctx.reverse, keep, *ctx.saved)
        return d_gx, d_w, None


class RecurrenceBackward(torch.autograd.Function):
    """(d gx, d w) of `Recurrence` as a differentiable function of (dh, gx, w): its backward is the hand-written
    second derivative."""

    @staticmethod
    def forward(ctx, dh, gx, w, reverse, keep, h, c, k, gates):
        delta, d_w, dc, dh_all = _ops().backward(dh, h, c, k, gates, w, reverse, keep)
        ctx.save_for_backward(w)
        ctx.saved = (h, c, k, gates, delta, dc, dh_all)
        ctx.reverse = reverse
        return delta, d_w

    @staticmethod
    @once_differentiable
    def backward(ctx, g_delta, g_w):
        (w,) = ctx.saved_tensors
        h, c, k, gates, delta, dc, dh_all = ctx.saved
        empty = torch.empty(0, dtype=w.dtype)
        g_dh, g_gx, g_ww = _ops().double_backward(
            empty if g_delta is None else g_delta,
            empty if g_w is None else g_w.contiguous(),
            h,
            c,
            k,
            gates,
            w,
            delta,
            dc,
            dh_all,
            ctx.reverse,
        )
        return g_dh, g_gx, g_ww, None, None, None, None, None, None


def direction(
    x_tm: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor, reverse: bool
) -> torch.Tensor:
    """One LSTM direction over time-major x [T, B, in]: outputs [T, B, H] in time order (nn.LSTM's maths)."""
    t, b, _ = x_tm.shape
    gx = torch.addmm(b_ih + b_hh, x_tm.reshape(t * b, -1), w_ih.t()).view(t, b, -1)  # [T, B, 4H]
    return Recurrence.apply(gx, w_hh, reverse)


def bidirectional(lstm: torch.nn.LSTM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.LSTM(bidirectional=True, batch_first=True)'s two output halves from its own weights, time-major:
    (h_f, h_r) [T, B, H] each, h_r in time order (position t: after x_{T-1}..x_t)."""
    x_tm = x.transpose(0, 1).contiguous()  # [T, B, in]
    h_f = direction(x_tm, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0, False)
    h_r = direction(
        x_tm,
        lstm.weight_ih_l0_reverse,
        lstm.weight_hh_l0_reverse,
        lstm.bias_ih_l0_reverse,
        lstm.bias_hh_l0_reverse,
        True,
    )
    return h_f, h_r
