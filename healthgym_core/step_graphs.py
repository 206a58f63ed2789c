"""CUDA-graph replay of the fixed-shape critic and generator updates.

On a GPU the faithful loop is launch bound: a step at L = 60 is thousands of tiny kernels (two LSTM directions,
60 time steps, a forward pass, a backward pass and the gradient penalty's double backward). A CUDA graph records
those kernels once and replays them with one launch. Shapes change with the curriculum length, so there is one
graph per (update, input shapes): at most one critic and one generator graph per length of the schedule.

What is captured is a *gradient function*: forward and backward of one update on tensors drawn beforehand, filling
the parameters' `.grad` and returning 0-d tensors. Random draws, the finiteness check (a host sync) and the
optimiser step stay outside, so the random streams, the "no optimiser step on a non-finite loss" guarantee and the
checkpoint format are the same with and without graphs. (torch.compile is not an alternative for the critic: its
AOTAutograd does not support the gradient penalty's double backward.)

Every new graph is checked once against an eager run of the same inputs (outputs and gradients); any capture
failure or mismatch turns graphs off for the run with a warning, and training continues eagerly. Graphs record the
non-cuDNN LSTM kernels (cuDNN's RNN is only worth its workspace juggling when launches cost something).
`StepGraphs(backend="emulated")` runs the same bookkeeping on CPU (static inputs, outputs and gradients overwritten
in place at each replay) so that tests exercise it without a GPU.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

GradientFn = Callable[..., dict[str, torch.Tensor]]
BACKENDS = ("cuda", "emulated")
WARMUP_CALLS = 2  # eager calls on a side stream before capture (CUDA needs them; the last is the check's reference)
CHECK_RTOL = 1e-4  # replay vs eager, relative to each tensor's largest magnitude


class GraphCheckError(RuntimeError):
    """A captured graph did not reproduce the eager result."""


@dataclass
class _Captured:
    inputs: list[torch.Tensor | None]  # static inputs, copied into before each replay
    outputs: dict[str, torch.Tensor]  # static outputs, overwritten by each replay
    grads: list[torch.Tensor | None]  # static gradients, bound to the parameters after each replay
    replay: Callable[[], None]


def clear_grads(params: Sequence[torch.Tensor]) -> None:
    """Grads set to None, so that the next backward assigns them rather than accumulating."""
    for p in params:
        p.grad = None


class StepGraphs:
    """Capture-on-first-use cache of gradient functions, keyed by name and input shapes."""

    def __init__(self, device: torch.device, backend: str = "cuda", capture_batch: int | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        if backend == "cuda" and device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.device, self.backend = device, backend
        self.capture_batch = capture_batch  # only this batch size is captured (a ragged last batch runs eagerly)
        self.enabled = True
        self.disabled_reason: str | None = None
        self.captured: dict[tuple, _Captured] = {}
        self.replays = 0
        self.eager_calls = 0

    def run(
        self,
        name: str,
        fn: GradientFn,
        params: Sequence[torch.Tensor],
        inputs: Sequence[torch.Tensor | None],
    ) -> dict[str, torch.Tensor]:
        """fn(*inputs) with its parameters' grads set to None beforehand; replayed from a graph when possible.

        The returned tensors may be overwritten by the next call with the same key: read them before that.
        """
        batch = next(t.shape[0] for t in inputs if t is not None)
        if not self.enabled or (self.capture_batch is not None and batch != self.capture_batch):
            return self._eager(fn, params, inputs)
        key = (name, *(None if t is None else (tuple(t.shape), t.dtype) for t in inputs))
        entry = self.captured.get(key)
        if entry is None:
            try:
                entry = self._capture(fn, params, inputs)
            except Exception as e:  # noqa: BLE001 - any capture failure means: train eagerly
                self.disable(f"{name} graph for shapes {key[1:]}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                return self._eager(fn, params, inputs)
            self.captured[key] = entry
            return self._bind(entry, params)
        for static, x in zip(entry.inputs, inputs):
            if static is not None:
                static.copy_(x)
        entry.replay()
        self.replays += 1
        return self._bind(entry, params)

    def disable(self, reason: str) -> None:
        warnings.warn(f"CUDA graphs turned off ({reason}); training continues eagerly", stacklevel=3)
        self.enabled, self.disabled_reason = False, reason
        self.captured.clear()

    def _eager(self, fn: GradientFn, params, inputs) -> dict[str, torch.Tensor]:
        clear_grads(params)
        self.eager_calls += 1
        return fn(*inputs)

    @staticmethod
    def _bind(entry: _Captured, params) -> dict[str, torch.Tensor]:
        for p, g in zip(params, entry.grads):
            p.grad = g
        return entry.outputs

    def _capture(self, fn: GradientFn, params, inputs) -> _Captured:
        static = [None if x is None else x.clone() for x in inputs]
        # cuDNN's RNN kernels stay out of the graphs: the non-cuDNN LSTM is plain kernels (and already what the
        # gradient penalty uses); its launch cost, the reason to prefer cuDNN eagerly, is what a graph removes.
        with torch.backends.cudnn.flags(enabled=False):
            with self._side_stream():
                for _ in range(WARMUP_CALLS):
                    clear_grads(params)
                    eager_out = fn(*static)
            eager_out = {k: v.detach().clone() for k, v in eager_out.items()}
            eager_grads = [None if p.grad is None else p.grad.clone() for p in params]
            clear_grads(params)
            replay, outputs = self._record(lambda: fn(*static), params)
        grads = [p.grad for p in params]
        replay()
        _check_same(outputs, grads, eager_out, eager_grads)
        return _Captured(static, outputs, grads, replay)

    @contextlib.contextmanager
    def _side_stream(self) -> Iterator[None]:
        if self.backend != "cuda":
            yield
            return
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            yield
        torch.cuda.current_stream(self.device).wait_stream(stream)

    def _record(self, call: Callable[[], dict[str, torch.Tensor]], params) -> tuple[Callable[[], None], dict]:
        if self.backend == "cuda":
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = call()
            return graph.replay, outputs
        # Emulation: what a replay does to memory (static outputs and grads overwritten in place), eagerly.
        outputs = call()
        grads = [p.grad for p in params]

        def replay() -> None:
            clear_grads(params)
            with torch.backends.cudnn.flags(enabled=False):  # as recorded
                fresh = call()
            for k, v in fresh.items():
                outputs[k].copy_(v)
            for g, p in zip(grads, params):
                if g is not None:
                    g.copy_(p.grad)
            for p, g in zip(params, grads):
                p.grad = g

        # A capture does not run the kernels: leave the static tensors unset, as a real capture would.
        for v in outputs.values():
            v.detach().fill_(float("nan"))
        for g in grads:
            if g is not None:
                g.fill_(float("nan"))
        return replay, outputs


def _check_same(outputs, grads, eager_out, eager_grads) -> None:
    if not all(bool(torch.isfinite(v).all()) for v in eager_out.values()):
        return  # a diverged step: the caller's finiteness check stops training either way
    pairs = [(f"output {k}", outputs[k], eager_out[k]) for k in eager_out]
    pairs += [(f"gradient {i}", g, e) for i, (g, e) in enumerate(zip(grads, eager_grads)) if e is not None]
    if any(g is None for g, e in zip(grads, eager_grads) if e is not None):
        raise GraphCheckError("the graph did not produce every gradient")
    for what, got, want in pairs:
        scale = float(want.abs().max()) if want.numel() else 0.0
        err = float((got.detach() - want).abs().max()) if want.numel() else 0.0
        if not err <= CHECK_RTOL * max(scale, 1e-12):
            raise GraphCheckError(f"replayed {what} differs from eager by {err:.3g} (scale {scale:.3g})")
