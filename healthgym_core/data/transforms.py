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
        probabilities of the categories, and each patient's codes are drawn from them as a chain that keeps every
        month's probabilities (so categories keep the shares the generator gives them, where argmax drops every
        category that is never the most likely and rare groups vanish) and switches as rarely as they allow: a
        patient keeps last month's category k with probability min(1, p_t(k) / p_{t-1}(k)), else moves to one whose
        probability rose, so it switches in a share of months equal to the total-variation distance between
        consecutive months' probabilities (what `losses.switch_rates` trains against) and never when they hold.
        One keep-or-switch draw a patient-month serves every variable, so a regimen's columns change together, as
        real regimen switches do. A variable no training patient ever changes takes one value for the whole record,
        from its probabilities averaged over the months. `seed=None`: argmax in every month (Health Gym v1's
        post-processing). One-hot rows decode to their own categories either way."""
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
        n, months = x.shape[:2]
        rng = np.random.default_rng(seed)
        first = rng.random((n, len(blocks)))  # [N, C]: each patient's draw of its first month's categories
        keep_u = rng.random((n, months))  # [N, T]: one keep-or-switch draw a patient-month, shared by the variables
        move_u = rng.random((n, months, len(blocks)))  # [N, T, C]: where a switch goes
        rows = np.arange(n)
        codes = np.zeros((n, months, len(blocks)), np.int64)
        for j, (s, e) in enumerate(blocks):
            p = np.clip(x[:, :, s:e], 0.0, None)
            if self.static and self.static[j]:
                p = np.broadcast_to(p.mean(axis=1, keepdims=True), p.shape)
            p = p / np.maximum(p.sum(-1, keepdims=True), 1e-12)
            k = _quantile(p[:, 0], first[:, j])
            codes[:, 0, j] = k
            for t in range(1, months):
                before, now = p[rows, t - 1, k], p[rows, t, k]
                rise = np.clip(p[:, t] - p[:, t - 1], 0.0, None)  # [N, K]: where the mass a switch takes goes
                total = rise.sum(-1, keepdims=True)  # [N, 1]: the mass that moved (the months' TVD)
                stay = (keep_u[:, t] * before < now) | (total[:, 0] <= 0)  # u < p_t(k) / p_{t-1}(k), without a 0/0
                k = np.where(stay, k, _quantile(rise / np.maximum(total, 1e-300), move_u[:, t, j]))
                codes[:, t, j] = k
        return reals, codes

    def to_dict(self) -> dict:
        return {"schema": self.schema.to_dict(), "reals": [asdict(p) for p in self.reals], "static": list(self.static)}

    @classmethod
    def from_dict(cls, d: dict) -> CohortTransform:
        """A recorded transform (one recorded before `static` existed treats no variable as static)."""
        static = tuple(bool(v) for v in d.get("static", ()))
        return cls(Schema.from_dict(d["schema"]), tuple(BoxCoxMinMax(**p) for p in d["reals"]), static)


def _quantile(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """[N, K] probabilities (rows summing to 1), [N] uniforms -> [N]: the category at quantile u of each row."""
    return np.minimum((np.cumsum(p, -1) <= u[:, None]).sum(-1), p.shape[-1] - 1)
