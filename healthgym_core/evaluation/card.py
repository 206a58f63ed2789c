"""The card that travels with every exported cohort: where the data came from, what made the cohort, how faithful
it is on test patients next to what real patients score, how private it is, and what it is not. Written as JSON (for
machines, its layout fixed by CARD_VERSION) and as a one-page HTML (for a person), atomically, beside the cohort:
`synthetic.csv` gets `synthetic.card.json` and `synthetic.card.html`.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from healthgym_core.atomic import atomic_write
from healthgym_core.data.prepared import PreparedData
from healthgym_core.evaluation.final import METRIC_INFO, final_metrics, real_floor
from healthgym_core.evaluation.realism import TARGETS, misses, realism

CARD_VERSION = 1  # bump when the JSON layout changes
# The privacy rules a cohort must meet to be called shareable by this card (empirical attacks, not a guarantee).
PRIVACY_RULES = {
    "exact_copies": ("no synthetic patient identical to a training patient", lambda v: v == 0),
    # A record closer to a training patient than to any holdout patient, as often as chance allows: real patients the
    # generator never saw score 0.49-0.51. (Comparing the two medians instead fails such patients: 0.95-1.00 of
    # each other from sampling noise alone.)
    "p_dcr_train_closer": (
        "share of synthetic patients closer to a training patient than to a holdout patient <= 0.6 (0.5: chance)",
        lambda v: v <= 0.6,
    ),
    "membership_auc": ("membership-inference AUC <= 0.6 (0.5: no better than chance)", lambda v: v <= 0.6),
}
# Fidelity measures shown besides the user-level ones (realism.TARGETS): the ranking signal and marginal summaries.
SIGNALS = ("energy_feat", "ks_mean", "tvd_mean", "w1_mean", "fd_feat", "emd_feat")
NOT = (
    "not to be used for clinical decisions about any patient",
    "not a guarantee of privacy: the checks above are empirical attacks, not differential privacy",
)
_FLOOR_CACHE: dict[str, dict[str, float]] = {}


def _floor(data: PreparedData, seed: int) -> dict[str, float]:
    """What real patients score: the validation patients measured against the test patients as a cohort is."""
    key = f"{data.fingerprint}:{seed}"
    if key not in _FLOOR_CACHE:
        real = (data.val_cohort.reals, data.val_cohort.codes)
        test = (data.test_cohort.reals, data.test_cohort.codes)
        _FLOOR_CACHE[key] = {**real_floor(data, seed=seed), **realism(data.schema, test, real, seed)}
    return _FLOOR_CACHE[key]


def _num(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def cohort_card(
    data: PreparedData, reals: np.ndarray, codes: np.ndarray, made_by: dict, cohort_file: str, seed: int = 0
) -> dict:
    """The card of a synthetic cohort (reals [N, T, R] in original units, internal codes [N, T, C]) trained on
    `data`. `made_by`: what made it (configuration, generator steps, epoch, checkpoint, code version)."""
    test = (data.test_cohort.reals, data.test_cohort.codes)
    scores = final_metrics(data, reals, codes, seed=seed)
    user = realism(data.schema, test, (reals, codes), seed)
    floor = _floor(data, seed)
    fidelity = []
    for key in [*SIGNALS, *user]:
        value = user.get(key, scores.get(key))
        if value is None:
            continue
        family = key.split("/")[0] + "/<variable>" if "/" in key else key
        what, rule = TARGETS.get(family, (METRIC_INFO.get(key, ("", True))[0], None))
        fidelity.append(
            {"measure": key, "value": _num(value), "real_floor": _num(floor.get(key)), "target": rule, "what": what}
        )
    missed = misses(user)
    for row in fidelity:
        row["meets_target"] = None if row["target"] is None else row["measure"] not in missed
    privacy = [
        {"check": k, "value": _num(scores[k]), "rule": rule, "passes": bool(ok(scores[k]))}
        for k, (rule, ok) in PRIVACY_RULES.items()
    ]
    simulated = data.train_cohort.is_simulated
    met = sum(bool(r["meets_target"]) for r in fidelity if r["target"])
    aimed = sum(1 for r in fidelity if r["target"])
    return {
        "card_version": CARD_VERSION,
        "cohort": {"file": cohort_file, "patients": int(reals.shape[0]), "months": int(reals.shape[1])},
        "data": {
            "source": data.source,
            "simulated": bool(simulated),
            "fingerprint": data.fingerprint,
            "schema": data.schema.name,
            "split": {"train": len(data.split.train), "val": len(data.split.val), "test": len(data.split.test)},
        },
        "made_by": made_by,
        "fidelity": {
            "against": f"the {test[0].shape[0]} test patients; real_floor: the validation patients scored the same way",
            "targets_met": met,
            "targets": aimed,
            "verdict": (
                f"faithful: meets all {aimed} targets"
                if met == aimed
                else f"not yet faithful: misses {aimed - met} of {aimed} targets"
            ),
            "measures": fidelity,
        },
        "privacy": {
            "verdict": "passes" if all(p["passes"] for p in privacy) else "fails",
            "checks": privacy,
            "details": {k: _num(scores[k]) for k in ("dcr_train_median", "dcr_holdout_median")},
        },
        "not": (["not the Health Gym dataset: simulated patients"] if simulated else []) + list(NOT),
    }


def card_paths(cohort: str | Path) -> tuple[Path, Path]:
    """(JSON, HTML) beside a cohort file: synthetic.csv -> synthetic.card.json, synthetic.card.html."""
    cohort = Path(cohort)
    stem = cohort.name[: -len(cohort.suffix)] if cohort.suffix else cohort.name
    return cohort.with_name(f"{stem}.card.json"), cohort.with_name(f"{stem}.card.html")


def write_card(cohort: str | Path, card: dict) -> tuple[Path, Path]:
    """Write the card's JSON and HTML beside `cohort`, each atomically."""
    js, page = card_paths(cohort)
    atomic_write(js, lambda p: p.write_text(json.dumps(card, indent=2)))
    text = card_html(card)
    atomic_write(page, lambda p: p.write_text(text, encoding="utf-8"))
    return js, page


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def card_html(card: dict) -> str:
    """The card as one self-contained page a person reads in a minute."""
    e = html.escape
    d, m, f, p = card["data"], card["made_by"], card["fidelity"], card["privacy"]
    ok = {True: '<td class="ok">yes</td>', False: '<td class="bad">no</td>', None: "<td>-</td>"}
    rows = "".join(
        f"<tr><td><code>{e(r['measure'])}</code></td><td>{_fmt(r['value'])}</td><td>{_fmt(r['real_floor'])}</td>"
        f'<td class="rule">{e(r["target"] or "")}</td>{ok[r["meets_target"]]}<td>{e(r["what"])}</td></tr>'
        for r in f["measures"]
    )
    checks = "".join(
        f"<tr><td><code>{e(c['check'])}</code></td><td>{_fmt(c['value'])}</td><td>{e(c['rule'])}</td>"
        f"{ok[c['passes']]}</tr>"
        for c in p["checks"]
    )
    made = "".join(
        f"<dt>{e(str(k))}</dt><dd>{e(json.dumps(v) if isinstance(v, dict) else str(v))}</dd>" for k, v in m.items()
    )
    banner = "simulated" if d["simulated"] else "real"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Cohort card</title><style>'
        "body{font:15px/1.45 system-ui,sans-serif;max-width:1050px;margin:24px auto;padding:0 16px;color:#1f2328}"
        "table{border-collapse:collapse;margin:8px 0 18px}td,th{border-bottom:1px solid #e3e6ea;padding:4px 9px;"
        "text-align:left;vertical-align:top}td.ok{color:#2e7d32;font-weight:600}td.rule{white-space:nowrap}td.bad{color:#b00020;font-weight:600}"
        "dt{font-weight:600;float:left;clear:left;width:150px}dd{margin-left:160px}.banner{padding:8px 12px;"
        "border-radius:4px;margin:8px 0}.simulated{background:#fff4d6}.real{background:#e7f2ff}.verdict{font-size:1.1em}"
        "</style></head><body>"
        f"<h1>Cohort card: <code>{e(card['cohort']['file'])}</code></h1>"
        f'<div class="banner {banner}">Data: {e(d["source"])} (fingerprint {e(d["fingerprint"])}, schema '
        f"{e(d['schema'])})</div>"
        f'<p class="verdict"><b>Fidelity:</b> {e(f["verdict"])}. <b>Privacy:</b> {e(p["verdict"])}.</p>'
        f"<p>{card['cohort']['patients']:,} synthetic patients x {card['cohort']['months']} months.</p>"
        f"<h2>What made it</h2><dl>{made}</dl>"
        f"<h2>Fidelity</h2><p>Against {e(f['against'])}.</p><table><tr><th>measure</th><th>cohort</th>"
        f"<th>real floor</th><th>target</th><th>met</th><th>what it is</th></tr>{rows}</table>"
        f"<h2>Privacy</h2><table><tr><th>check</th><th>value</th><th>rule</th><th>passes</th></tr>{checks}</table>"
        "<h2>What it is not</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in card["not"]) + "</ul>"
        f"<p><small>card version {card['card_version']}; the same card as JSON beside this page.</small></p>"
        "</body></html>\n"
    )
