"""The dashboard's HTML and JavaScript: one shell per page, filled from the JSON API and refreshed when the
experiment folder changes. The styles are the report's (study/reporting/html.py)."""

from __future__ import annotations

from study.reporting.html import CSS, SORT_FUNCTION_JS, esc

EXTRA_CSS = """
header.top{display:flex;gap:18px;align-items:baseline;flex-wrap:wrap;border-bottom:2px solid #d7dde6;padding:8px 0}
header.top a{font-weight:600} .live{color:#2e7d32;font-size:.9em} .live.stale{color:#8a8f98}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px}
.chart{min-height:360px;border:1px solid #eef0f3} tr.status-running td{background:#eef7ee}
tr.role-base td:first-child{border-left:4px solid #1f77b4} td.collapsed{color:#b00020;font-weight:600}
td.faithful{color:#2e7d32;font-weight:600} .controls{margin:8px 0} .controls label{margin-right:12px}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:18px} .muted{color:#6b7280}
button{padding:4px 10px}
"""

SCRIPT = (
    SORT_FUNCTION_JS
    + r"""
const TOKEN = new URLSearchParams(location.search).get('token') || '';
function api(path) {
  const sep = path.includes('?') ? '&' : '?';
  return fetch(path + sep + 'token=' + encodeURIComponent(TOKEN)).then(r => {
    if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
    return r.headers.get('content-type').includes('json') ? r.json() : r.text(); });
}
function link(path) { const sep = path.includes('?') ? '&' : '?'; return path + sep + 'token=' + encodeURIComponent(TOKEN); }
function plot(id, fig) {
  const el = document.getElementById(id); if (!el) return;
  Plotly.react(el, fig.data, Object.assign({autosize: true}, fig.layout), {responsive: true, displaylogo: false});
  if (!el._hgClick) { el._hgClick = true; el.on('plotly_click', ev => {
      const cd = ev.points && ev.points[0] && ev.points[0].customdata;
      if (typeof cd === 'string' && /^([0-9a-f]{8}|[0-9a-f]{5}_\d{5})$/.test(cd)) location.href = link('/trial/' + cd); }); }
}
let VERSION = null;
function watch(render) {
  const tick = () => api('/api/version').then(v => {
      document.getElementById('live').textContent = v.finished ? 'study finished' : 'following the study live';
      if (v.version !== VERSION) { VERSION = v.version; return render(); } })
    .catch(e => { document.getElementById('live').textContent = 'not updating (' + e.message + ')';
                  document.getElementById('live').className = 'live stale'; });
  tick(); setInterval(tick, 2000);
}
"""
)

OVERVIEW_JS = r"""
function render() {
  return api('/api/overview').then(d => {
    document.getElementById('head').innerHTML = d.header;
    document.getElementById('board').innerHTML = d.board; bindSort(document.getElementById('board'));
    document.getElementById('links').innerHTML = d.links;
    plot('curves', d.curves); plot('curves_rank', d.curves_rank); plot('best', d.best);
    const fx = document.getElementById('factors'); fx.innerHTML = '';
    d.factors.forEach((f, i) => { const div = document.createElement('div'); div.id = 'factor' + i; div.className = 'chart';
                                  fx.appendChild(div); plot(div.id, f); });
    const r = document.getElementById('rungs'); r.style.display = d.rungs ? '' : 'none'; if (d.rungs) plot('rungs', d.rungs);
    document.querySelectorAll('a.trial, a.card').forEach(a => a.href = link(a.getAttribute('data-href')));
  });
}
watch(render);
"""

TRIAL_JS = r"""
const ID = location.pathname.split('/').pop();
function loadDynamics() {
  const a = document.getElementById('first').value, b = document.getElementById('last').value;
  return api('/api/trial/' + ID + '/dynamics?first=' + a + '&last=' + b).then(f => plot('dynamics', f));
}
function loadPatients() {
  const c = document.getElementById('ckpt').value, n = document.getElementById('n').value;
  const wait = document.createElement('p'); wait.className = 'muted';
  wait.textContent = 'sampling ' + n + ' patients from ' + c + ' ...';
  document.getElementById('patients').replaceChildren(wait);
  const q = '?checkpoint=' + encodeURIComponent(c) + '&n=' + encodeURIComponent(n);
  document.getElementById('download').href = link('/download/' + ID + q);
  document.getElementById('card').href = link('/card/' + ID + q);
  return api('/api/trial/' + ID + '/patients' + q).then(h => {
    document.getElementById('patients').innerHTML = h; });
}
function render() {
  return api('/api/trial/' + ID).then(d => {
    document.getElementById('head').innerHTML = d.header;
    plot('history', d.history);
    const sel = document.getElementById('ckpt'), keep = sel.value;
    sel.replaceChildren(...d.checkpoints.map(c => new Option(c, c)));  // names as text, never as markup
    if (d.checkpoints.includes(keep)) sel.value = keep; else if (d.checkpoints.length) sel.value = d.checkpoints[d.checkpoints.length - 1];
    if (!document.getElementById('last').value) { document.getElementById('last').value = d.epochs;
      document.getElementById('first').value = Math.max(1, d.epochs - 19); }
    loadDynamics();
    if (!document.getElementById('patients').dataset.done && d.checkpoints.length) {
      document.getElementById('patients').dataset.done = '1'; loadPatients(); }
  });
}
document.getElementById('redraw').onclick = loadDynamics;
document.getElementById('sample').onclick = loadPatients;
watch(render);
"""

COMPARE_JS = r"""
const IDS = (new URLSearchParams(location.search).get('ids') || '').split(',').filter(x => x);
function render() {
  return Promise.all(IDS.map(id => api('/api/trial/' + encodeURIComponent(id)))).then(ds => {
    const root = document.getElementById('cols'); root.innerHTML = '';
    ds.forEach((d, i) => { const col = document.createElement('div');
      col.innerHTML = d.header + '<div id="h' + i + '" class="chart"></div><div id="p' + i + '"><p class="muted">sampling ...</p></div>';
      root.appendChild(col); plot('h' + i, d.history);
      const c = d.checkpoints[d.checkpoints.length - 1];
      if (c) api('/api/trial/' + IDS[i] + '/patients?checkpoint=' + encodeURIComponent(c) + '&n=500')
        .then(h => document.getElementById('p' + i).innerHTML = h); });
  });
}
watch(render);
"""


def shell(title: str, body: str, script: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
        f'<style>{CSS}{EXTRA_CSS}</style><script src="/static/plotly.min.js"></script></head><body>'
        '<header class="top"><a class="home" href="#" onclick="location.href=link(\'/\');return false">'
        f'Study dashboard</a><span id="live" class="live">connecting ...</span></header>{body}'
        f"<script>{SCRIPT}{script}</script></body></html>\n"
    )


def overview_page() -> str:
    body = (
        '<div id="head"></div><div id="links"></div><h2>Leaderboard</h2><p class="muted">Click a column to sort, a '
        'trial to open it; tick up to three and compare them.</p><div id="board"></div>'
        '<h2>The search</h2><div class="grid"><div id="curves" class="chart"></div><div id="curves_rank" class="chart">'
        '</div><div id="best" class="chart"></div><div id="rungs" class="chart"></div></div>'
        '<h3>Each factor against the final metric</h3><div id="factors" class="grid"></div>'
    )
    return shell("Study dashboard", body, OVERVIEW_JS)


def trial_page() -> str:
    body = (
        '<div id="head"></div><h2>Metrics per epoch</h2><div id="history" class="chart"></div>'
        '<h2>Learning dynamics</h2><div class="controls"><label>epochs <input id="first" type="number" min="1" '
        'style="width:5em"> to <input id="last" type="number" min="1" style="width:5em"></label>'
        '<button id="redraw">draw</button></div><div id="dynamics" class="chart"></div>'
        '<h2>Real vs synthetic patients</h2><div class="controls"><label>checkpoint <select id="ckpt"></select></label>'
        '<label>patients <input id="n" type="number" value="1000" min="10" max="5000" style="width:6em"></label>'
        '<button id="sample">sample</button> <a id="download" class="button" href="#">download this cohort (CSV, '
        'the input\'s own format)</a> <a id="card" class="button" href="#" target="_blank">its card (fidelity on '
        'test patients, privacy)</a></div><div id="patients"></div>'
    )
    return shell("Trial", body, TRIAL_JS)


def compare_page() -> str:
    return shell("Compare trials", '<h2>Trials side by side</h2><div id="cols" class="cols"></div>', COMPARE_JS)
