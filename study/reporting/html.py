"""HTML helpers of the report: CSS, the sortable table, embedded figures, sections that fail visibly."""

from __future__ import annotations

import base64
import html
import io
import math
import sys
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 100


CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1400px;
     padding:0 24px 48px;color:#1d2430;line-height:1.45}
h1{font-size:1.7em;margin:.8em 0 .3em} h2{border-bottom:2px solid #d7dde6;padding-bottom:4px;margin-top:2em}
h3{margin:1.4em 0 .4em}
.banner{padding:12px 16px;border-radius:6px;font-size:1.1em;margin:10px 0 14px;border:2px solid}
.banner.simulated{background:#fff4e5;border-color:#e67e22;color:#7a3d00;font-weight:600}
.banner.real{background:#eaf3fb;border-color:#4a90c8;color:#163a5a}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0}
dl.facts dt{font-weight:600;color:#4a5566} dl.facts dd{margin:0}
code{background:#f1f3f6;padding:1px 4px;border-radius:3px;font-size:.92em}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.9em;margin-right:6px;color:#fff}
.badge.completed{background:#2e7d32} .badge.pruned{background:#8a8f98} .badge.diverged{background:#c62828}
.badge.error{background:#222}
.note{background:#f6f7f9;border-left:4px solid #a0a8b5;padding:8px 12px;margin:10px 0;color:#3a4350}
.note.warn{border-left-color:#e67e22;background:#fff8ef}
.lead{font-size:1.05em;margin:6px 0 10px}
table.data{border-collapse:collapse;font-size:13px;margin:8px 0;font-variant-numeric:tabular-nums}
table.data th,table.data td{border:1px solid #d7dde6;padding:3px 7px;text-align:right;white-space:nowrap}
table.data td.text,table.data th.text{text-align:left}
table.data thead th{background:#eef1f5;position:sticky;top:0}
table.sortable thead th{cursor:pointer;user-select:none}
table.sortable thead th:hover{background:#dde3ea}
table.sortable th[data-dir=asc]::after{content:' \\25B2'} table.sortable th[data-dir=desc]::after{content:' \\25BC'}
tr.status-pruned td{color:#6b7280;background:#f7f7f8;font-style:italic}
tr.status-diverged td{background:#fdecea;color:#8e1b1b} tr.status-error td{background:#eee;color:#555}
tr.upstream td{background:#fff7cc;font-weight:600} tr.upstream td:first-child{border-left:4px solid #e0a800}
.scroll{overflow-x:auto;max-width:100%}
img.fig{max-width:100%;height:auto;display:block;margin:8px 0 4px;border:1px solid #eef0f3}
.caption{color:#4a5566;font-size:.95em;margin:0 0 14px}
nav.toc a{margin-right:14px}
.side{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
"""


# Sortable tables: click a header to sort by it (numbers as numbers, blanks last). `bindSort(root)` binds every
# table.sortable under root; the live dashboard calls it again on each table it redraws.
SORT_FUNCTION_JS = """
function bindSort(root) {
  root.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.title = th.title || 'click to sort';
      th.addEventListener('click', function () {
        var asc = th.getAttribute('data-dir') !== 'asc';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('data-dir'); });
        th.setAttribute('data-dir', asc ? 'asc' : 'desc');
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        function key(row) { var c = row.cells[col]; return c.hasAttribute('data-v') ? c.getAttribute('data-v') : c.textContent; }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b), nx = x === '' ? NaN : Number(x), ny = y === '' ? NaN : Number(y);
          if (x === '' || y === '') { return (x === '') - (y === ''); }  // blanks last either way
          var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
}
"""
SORT_JS = SORT_FUNCTION_JS + "bindSort(document);\n"


def log(message: str) -> None:
    """Progress of the report on stderr."""
    print(f"report: {message}", file=sys.stderr, flush=True)


def esc(x: object) -> str:
    return html.escape(str(x))


def note(text: str, warn: bool = False) -> str:
    return f'<p class="note{" warn" if warn else ""}">{text}</p>'


def figure_html(fig: plt.Figure, alt: str, caption: str = "") -> str:
    """The figure as an embedded PNG (and closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return image_html(buf.getvalue(), alt, caption)


def image_html(png: bytes, alt: str, caption: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cap = f'<p class="caption">{caption}</p>' if caption else ""
    return f'<img class="fig" alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}'


def fmt(v: object) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "" if math.isnan(v) else str(v)
        return f"{v:.4g}"
    return "" if v is None else str(v)


def table_html(
    frame: pd.DataFrame,
    row_classes: Sequence[str] | None = None,
    sortable: bool = True,
    titles: dict[str, str] | None = None,
) -> str:
    """An HTML table; every cell carries its raw value in data-v so the inline script sorts numbers as numbers."""
    titles = titles or {}
    heads = []
    for c in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        t = f' title="{esc(titles[c])}"' if c in titles else ""
        heads.append(f'<th class="{"num" if numeric else "text"}"{t}>{esc(c)}</th>')
    body = []
    for i, rec in enumerate(frame.itertuples(index=False)):
        cls = f' class="{row_classes[i]}"' if row_classes else ""
        cells = []
        for v in rec:
            raw = "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
            kind = (
                "num"
                if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                else "text"
            )
            cells.append(f'<td class="{kind}" data-v="{esc(raw)}">{esc(fmt(v))}</td>')
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    sort = " sortable" if sortable else ""
    return (
        f'<div class="scroll"><table class="data{sort}"><thead><tr>{"".join(heads)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def guarded(name: str, build: Callable[[], str]) -> str:
    """Run one section; a failure becomes a visible note (and a warning on stderr), never a lost report."""
    log(name)
    try:
        return build()
    except Exception as e:  # noqa: BLE001 - the report must still be written
        message = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        print(f"warning: report section '{name}' failed: {message}", file=sys.stderr)
        plt.close("all")
        return note(f"This part could not be drawn ({esc(message)}).", warn=True)
