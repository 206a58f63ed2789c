"""Box-Cox + min-max for real variables, one-hot for the others, and the exact inverse back to the file's units.

Upstream procedure (Health Gym v1): x' = x + 1e-3; lambda by maximum likelihood (scipy.stats.boxcox); bc =
BoxCox_lambda(x'); y = (bc - min) / range with min and range of bc over the training rows. Fitted on training
patients only. The inverse clamps lambda*bc + 1 at 1e-12 as upstream does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import special, stats

from healthgym_core.data.cohort import Cohort
from healthgym_core.data.schema import Schema

EPS = 1e-3


@dataclass(frozen=True)
class BoxCoxMinMax:
    """Parameters of one real variable's transform (`range` is max - min of the Box-Cox values)."""

    lam: float
    min: float
    range: float
    eps: float = EPS

    @classmethod
    def fit(cls, x: np.ndarray, eps: float = EPS) -> BoxCoxMinMax:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        x = x[~np.isnan(x)] + eps
        if x.size == 0 or not np.all(np.isfinite(x)) or np.any(x <= 0) or np.ptp(x) == 0:
            return cls(1.0, 0.0, 1.0, eps)  # upstream's guard for degenerate columns
        _, lam = stats.boxcox(x)
        bc = special.boxcox(x, lam)
        lo, rng = float(bc.min()), float(bc.max() - bc.min())
        return cls(float(lam), lo, rng if rng != 0 else 1.0, eps)

    def transform(self, x: np.ndarray) -> np.ndarray:
        bc = special.boxcox(np.asarray(x, dtype=np.float64) + self.eps, self.lam)
        return (bc - self.min) / self.range

    def inverse(self, y: np.ndarray) -> np.ndarray:
        bc = np.asarray(y, dtype=np.float64) * self.range + self.min
        if self.lam == 0:
            return np.exp(bc) - self.eps
        base = np.maximum(self.lam * bc + 1.0, 1e-12)
        return np.power(base, 1.0 / self.lam) - self.eps


@dataclass(frozen=True)
class CohortTransform:
    """Maps a cohort to model tensors [P, T, F] in the schema's one-hot layout, and back."""

    schema: Schema
    reals: tuple[BoxCoxMinMax, ...]
    static: tuple[bool, ...] = ()  # per one-hot block: no training patient's value ever changes (e.g. Gender)

    @classmethod
    def fit(cls, train: Cohort) -> CohortTransform:
        reals = tuple(BoxCoxMinMax.fit(train.reals[:, :, j]) for j in range(train.schema.n_real))
        static = tuple(bool((train.codes[:, :, j] == train.codes[:, :1, j]).all()) for j in range(train.codes.shape[2]))
        return cls(train.schema, reals, static)

    def encode_arrays(self, reals: np.ndarray, codes: np.ndarray) -> np.ndarray:
        n, t = reals.shape[:2]
        out = np.zeros((n, t, self.schema.width), dtype=np.float64)
        for j, p in enumerate(self.reals):
            out[:, :, j] = p.transform(reals[:, :, j])
        for j, (start, end) in enumerate(self.schema.blocks()):
            k = codes[:, :, j]
            np.put_along_axis(out[:, :, start:end], k[..., None], 1.0, axis=-1)
        return out

    def encode(self, cohort: Cohort, dtype: type = np.float32) -> np.ndarray:
        return self.encode_arrays(cohort.reals, cohort.codes).astype(dtype)

    def decode(self, x: np.ndarray, seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
        """Generator rows [N, T, F] -> a released dataset's (reals in the file's units, internal codes).

        Reals: the exact inverse transform of values clipped to [0, 1], the training patients' range (a linear head
        can step beyond it; a sigmoid's values are inside already). Each one-hot block holds the generator's
        probabilities of the categories; every patient draws one uniform number per variable and takes, in each
        month, the category at that quantile of the month's probabilities. The categories then keep the shares the
        generator gives them (argmax drops every category that is never the most likely, so rare groups vanish), and
        a code changes between months only when the probabilities move, never from fresh noise. A variable no
        training patient ever changes takes one value for the whole record, from its probabilities averaged over the
        months. `seed=None`: argmax in every month (Health Gym v1's post-processing). One-hot rows decode to their own
        categories either way."""
        x = np.asarray(x, dtype=np.float64)
        reals = (
            np.stack([p.inverse(np.clip(x[:, :, j], 0.0, 1.0)) for j, p in enumerate(self.reals)], axis=-1)
            if self.reals
            else np.zeros(x.shape[:2] + (0,))
        )
        blocks = self.schema.blocks()
        if not blocks:
            return reals, np.zeros(x.shape[:2] + (0,), np.int64)
        if seed is None:
            return reals, np.stack([x[:, :, s:e].argmax(-1) for s, e in blocks], axis=-1).astype(np.int64)
        u = np.random.default_rng(seed).random((x.shape[0], len(blocks)))  # [N, C]: one draw per patient, variable
        codes = []
        for j, (s, e) in enumerate(blocks):
            p = np.clip(x[:, :, s:e], 0.0, None)
            if self.static and self.static[j]:
                p = np.broadcast_to(p.mean(axis=1, keepdims=True), p.shape)
            p = p / np.maximum(p.sum(-1, keepdims=True), 1e-12)
            k = (np.cumsum(p, -1) <= u[:, None, j : j + 1]).sum(-1)  # [N, T]: the category at quantile u
            codes.append(np.minimum(k, e - s - 1))
        return reals, np.stack(codes, axis=-1).astype(np.int64)

    def to_dict(self) -> dict:
        return {"schema": self.schema.to_dict(), "reals": [asdict(p) for p in self.reals], "static": list(self.static)}

    @classmethod
    def from_dict(cls, d: dict) -> CohortTransform:
        """A recorded transform (one recorded before `static` existed treats no variable as static)."""
        static = tuple(bool(v) for v in d.get("static", ()))
        return cls(Schema.from_dict(d["schema"]), tuple(BoxCoxMinMax(**p) for p in d["reals"]), static)
