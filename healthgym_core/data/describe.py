"""Per-variable statistics of a cohort, next to the published ART-for-HIV v2.0 figures where they exist."""

from __future__ import annotations

import numpy as np

from healthgym_core.data.cohort import Cohort

# Published summaries of the v2.0 file (third-party analysis; see the reference notes).
PUBLISHED_REAL = {
    "VL": {"min": 0.10, "median": 38.78, "mean": 7041.0, "max": 97566.0},
    "CD4": {"min": 7.96, "median": 466.4, "mean": 823.1, "max": 42475.0},
    "Rel_CD4": {"min": 1.871, "mean": 36.35, "max": 586.6},
}
PUBLISHED_MEAN_CODE = {"Gender": 1.137, "Extra_pk_En": 0.0669, "VL_M": 0.131, "CD4_M": 0.155, "Drug_M": 0.777}
PUBLISHED_SWITCH_RATE = 5691 / 8916
REGIMEN = ("Base_Drug_Combo", "Comp_INI", "Comp_NNRTI", "Extra_PI", "Extra_pk_En")


def switch_rate(cohort: Cohort) -> float | None:
    """Share of patients whose regimen (the drug variables the schema has) changes at least once."""
    idx = [j for j, v in enumerate(cohort.schema.categoricals) if v.name in REGIMEN]
    if not idx:
        return None
    reg = cohort.codes[:, :, idx]
    changes = (reg[:, 1:] != reg[:, :-1]).any(axis=(1, 2))
    return float(changes.mean())


def describe(cohort: Cohort) -> str:
    lines = [
        f"source: {cohort.source}",
        f"{cohort.n_patients} patients x {cohort.n_months} months, schema {cohort.schema.name}",
    ]
    lines.append("")
    lines.append(
        f"{'real':<10} {'min':>10} {'median':>10} {'mean':>10} {'max':>10} {'sd':>10}   published (min/median/mean/max)"
    )
    for j, v in enumerate(cohort.schema.reals):
        x = cohort.reals[:, :, j].reshape(-1)
        pub = PUBLISHED_REAL.get(v.name, {})
        shown = "/".join(f"{pub[k]:g}" if k in pub else "-" for k in ("min", "median", "mean", "max")) if pub else ""
        lines.append(
            f"{v.name:<10} {x.min():>10.4g} {np.median(x):>10.4g} {x.mean():>10.4g} {x.max():>10.4g} {x.std():>10.4g}   {shown}"
        )
    lines.append("")
    for j, v in enumerate(cohort.schema.categoricals):
        c = cohort.codes[:, :, j].reshape(-1)
        shares = np.bincount(c, minlength=v.num_classes) / c.size
        mean_code = float(np.asarray(v.codes, dtype=float)[c].mean())
        pub = PUBLISHED_MEAN_CODE.get(v.name)
        extra = f" (published {pub:g})" if pub is not None else ""
        lines.append(f"{v.name} [{v.kind}] mean code {mean_code:.4g}{extra}")
        for code, label, s in zip(v.codes, v.labels, shares):
            lines.append(f"    {code!s:>3} {label:<18} {s:7.2%}")
    rate = switch_rate(cohort)
    if rate is not None:
        lines.append("")
        lines.append(
            f"patients who switch regimen at least once: {rate:.1%} (published {PUBLISHED_SWITCH_RATE:.1%} with all regimen variables)"
        )
    return "\n".join(lines)
