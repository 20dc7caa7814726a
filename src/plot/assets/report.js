// driftscope report page: drift chart (canvas), linked virtual table, close-ups.
// Written for driftscope; no third-party code. Data comes from the #data JSON block.
(function () {
  'use strict';
  const D = JSON.parse(document.getElementById('data').textContent);
  const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf'];
  const METRICS = [
    ['rel_l2_err', 'relative L2 error'], ['one_minus_cosine', '1 - cosine'],
    ['max_abs_err', 'max abs error'], ['max_rel_err', 'max rel error'],
    ['mean_abs_err', 'mean abs error'], ['mean_rel_err', 'mean rel error'],
    ['rmse', 'RMSE'], ['snr_db', 'SNR (dB)'], ['cosine', 'cosine'],
    ['expected_err', 'expected rounding error'], ['inherited_err', 'inherited error']];
  const ROW_H = 22;
  const $ = (id) => document.getElementById(id);
  const color = (r) => COLORS[r % COLORS.length];
  const runs = D.runs;

  const st = {
    metric: 'rel_l2_err', log: true, re: null, op: '', sel: null, node: null,
    sortKey: 'order', sortDir: 1, x0: 0, x1: 1, hits: [], drag: null,
  };

  function num(v) { return typeof v === 'number' && isFinite(v) ? v : NaN; }
  function fmt(v) {
    if (v === undefined || v === null) return '';
    if (typeof v !== 'number') return String(v);
    if (!isFinite(v)) return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
    const a = Math.abs(v);
    return a >= 1e-2 && a < 1e5 ? v.toPrecision(4) : v.toExponential(2);
  }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
  }
  function val(p, key) { return num(p[key]); }

  // ---- rows and filter -------------------------------------------------------------------
  const all = [];
  const ops = new Set();
  let xmin = Infinity, xmax = -Infinity;
  runs.forEach((run, r) => run.pairs.forEach((p, i) => {
    all.push({ r: r, i: i, p: p });
    if (p.op_type) ops.add(p.op_type);
    xmin = Math.min(xmin, p.order); xmax = Math.max(xmax, p.order);
  }));
  if (!isFinite(xmin)) { xmin = 0; xmax = 1; }
  if (xmax === xmin) xmax = xmin + 1;
  st.x0 = xmin - 0.5; st.x1 = xmax + 0.5;
  const points = runs.map((run) => run.points.map((i) => ({ i: i, x: run.pairs[i].order })));

  function passes(p) {
    if (st.node !== null && !(p.node >= st.node && p.node < tend[st.node])) return false;
    if (st.op && p.op_type !== st.op) return false;
    if (st.re && !st.re.test(p.name)) return false;
    return true;
  }


  // ---- module tree -----------------------------------------------------------------------
  // Nodes come in preorder, so a node's subtree is the id range [n, tend[n]); pairs carry
  // their place's node id. Only the rows in view are in the DOM (100k nodes stay fast).
  const T = D.tree || { nodes: [[-1, 'model', '']], sources: [] };
  const TN = T.nodes.length;
  const TROW = 20;
  const tparent = new Int32Array(TN), tdepth = new Int32Array(TN), tend = new Int32Array(TN);
  const tkids = new Uint8Array(TN);
  for (let n = 0; n < TN; n++) {
    const p = T.nodes[n][0];
    tparent[n] = p;
    tdepth[n] = p >= 0 ? tdepth[p] + 1 : 0;
    if (p >= 0) tkids[p] = 1;
  }
  for (let n = TN - 1; n >= 0; n--) {
    tend[n] = Math.max(tend[n], n + 1);
    if (tparent[n] >= 0) tend[tparent[n]] = Math.max(tend[tparent[n]], tend[n]);
  }
  // Worst verdict (rank) and largest error ratio of each node's subtree, per run.
  const VRANK = { identical: 1, ok: 2, changed: 3, drift: 3, error: 4, shape_mismatch: 4, diverged: 5 };
  const VNAME = ['no data', 'identical', 'ok', 'drift', 'error', 'diverged'];
  const VCOLOR = ['#e4e4e4', '#b9b9b9', '#2ca02c', '#ff9f1c', '#8e44ad', '#d62728'];
  function vrank(p) {
    if (p.status === 'error' || p.status === 'shape_mismatch') return VRANK[p.status];
    return VRANK[p.verdict] || 0;
  }
  // Error over what the place inherited or rounding explains (as `compare` ranks places).
  function ratio(p) {
    // Statistics-only dumps: the relative difference of the recorded norms (a lower bound).
    let e = num(p.rel_l2_err);
    if (isNaN(e) && p.stats_diff) e = num(p.stats_diff.norm_rel_diff);
    const d = Math.max(num(p.expected_err) || 0, num(p.inherited_err) || 0);
    return e > 0 && d > 0 ? e / d : 0;
  }
  const tv = runs.map(() => new Uint8Array(TN));
  const tr = runs.map(() => new Float64Array(TN));
  runs.forEach((run, r) => run.pairs.forEach((p) => {
    const v = vrank(p), x = ratio(p);
    for (let n = p.node | 0; n >= 0; n = tparent[n]) {
      if (tv[r][n] >= v && tr[r][n] >= x) break; // its ancestors already hold as much
      if (v > tv[r][n]) tv[r][n] = v;
      if (x > tr[r][n]) tr[r][n] = x;
    }
  }));
  const texp = new Uint8Array(TN);
  const tfirst = new Uint8Array(TN);
  texp[0] = 1;
  runs.forEach((run) => {
    if (!run.first) return;
    const p = run.pairs.find((q) => q.name === run.first.tensor) || run.pairs.find((q) => q.place === run.first.name);
    if (!p) return;
    tfirst[p.node] = 1;
    for (let n = tparent[p.node]; n >= 0; n = tparent[n]) texp[n] = 1;
  });
  let tq = '', tkeep = null, thits = 0, tvis = [];
  function tflatten() {
    tvis = [];
    let n = 0;
    while (n < TN) {
      if (tkeep && !tkeep[n]) { n = tend[n]; continue; }
      tvis.push(n);
      n = (tkeep || texp[n]) ? n + 1 : tend[n];
    }
    $('treespacer').style.height = (tvis.length * TROW) + 'px';
    $('treeinfo').textContent = tkeep ? thits + ' match' + (thits === 1 ? '' : 'es') : TN + ' nodes';
  }
  function tsearch(q) {
    tq = q.trim().toLowerCase();
    if (!tq) { tkeep = null; thits = 0; } else {
      tkeep = new Uint8Array(TN); thits = 0;
      for (let n = 0; n < TN; n++) {
        const node = T.nodes[n];
        if (node[1].toLowerCase().includes(tq) || String(node[2]).toLowerCase().includes(tq)) {
          thits++;
          for (let m = n; m >= 0 && !tkeep[m]; m = tparent[m]) tkeep[m] = 1;
        }
      }
    }
    tflatten();
    $('tree').scrollTop = 0;
    trender();
  }
  function tratioText(x) { return x > 0 ? (x >= 100 ? x.toExponential(0) : x.toPrecision(2)) + '×' : ''; }
  function trender() {
    const box = $('tree');
    const first = Math.max(0, Math.floor(box.scrollTop / TROW) - 5);
    const last = Math.min(tvis.length, first + Math.ceil(box.clientHeight / TROW) + 10);
    let h = '';
    for (let k = first; k < last; k++) {
      const n = tvis[k], node = T.nodes[n];
      let cls = 'tnode';
      if (st.node === n) cls += ' sel';
      if (tfirst[n]) cls += ' first';
      const hit = tkeep && tq && (node[1].toLowerCase().includes(tq) || String(node[2]).toLowerCase().includes(tq));
      if (hit) cls += ' hit';
      const open = tkeep || texp[n];
      const tog = tkids[n] ? (open ? '▾' : '▸') : '';
      let strips = '', tip = node[2] ? node[2] + '\n' : '', worst = 0;
      runs.forEach((run, r) => {
        const v = tv[r][n], x = tr[r][n];
        worst = Math.max(worst, x);
        const op = v <= 1 ? 1 : 0.45 + 0.55 * Math.min(1, Math.log10(1 + x) / 2);
        strips += '<span class="strip" style="background:' + VCOLOR[v] + ';opacity:' + op.toFixed(2) + '"></span>';
        tip += run.label + ': ' + VNAME[v] + (x > 0 ? ', error ratio ' + tratioText(x) : '') + '\n';
      });
      h += '<div class="' + cls + '" data-n="' + n + '" style="top:' + (k * TROW) + 'px;padding-left:' + (4 + 14 * tdepth[n]) + 'px" title="' + esc(tip.trim()) + '">' +
        '<span class="tog">' + tog + '</span>' + strips + '<span class="tlabel">' + esc(node[1]) + '</span>' +
        '<span class="tratio">' + tratioText(worst) + '</span>' + (tfirst[n] ? '<span class="tfirst">first divergence</span>' : '') + '</div>';
    }
    $('treerows').innerHTML = h;
  }
  function nodePath(n) {
    const v = [];
    for (; n > 0; n = tparent[n]) v.push(T.nodes[n][1]);
    return v.reverse().join(' / ');
  }
  function selectNode(n) {
    st.node = (n === null || n === st.node || n === 0) ? null : n;
    const info = $('nodeinfo');
    if (st.node === null) { info.hidden = true; } else {
      info.hidden = false;
      info.innerHTML = 'in ' + esc(nodePath(st.node)) + '<button type="button" id="clearnode">show all</button>';
    }
    trender();
    refilter();
  }
  $('tree').addEventListener('scroll', trender);
  $('treerows').addEventListener('click', (e) => {
    const el = e.target.closest('.tnode');
    if (!el) return;
    const n = +el.dataset.n;
    if (e.target.classList.contains('tog')) {
      if (!tkids[n] || tkeep) return;
      texp[n] ^= 1; tflatten(); trender();
    } else {
      selectNode(n);
    }
  });
  $('nodeinfo').addEventListener('click', (e) => { if (e.target.id === 'clearnode') selectNode(null); });
  $('treesearch').addEventListener('input', (e) => tsearch(e.target.value));
  $('treesource').textContent = 'Structure from ' + (T.sources.length ? T.sources.join('; ') : 'the place names') +
    (T.note ? ' (' + T.note + ')' : '') + '. Strips: worst verdict per run (red diverged, orange drift, purple unreadable, green ok, grey identical); number: largest error ratio (error / max(inherited, rounding)).';
  function tscrollTo(n) {
    const k = tvis.indexOf(n);
    if (k >= 0) $('tree').scrollTop = Math.max(0, k * TROW - $('tree').clientHeight / 3);
  }

  let visible = [];
  const COLS = [
    ['order', '#', (p) => p.order, true], ['run', 'run', null, false],
    ['name', 'tensor', (p) => p.name, false], ['op_type', 'op', (p) => p.op_type || '', false],
    ['dtype', 'dtypes', (p) => (p.dtype_ref || '?') + '/' + (p.dtype_dev || '?'), false],
    ['shape', 'shape', (p) => JSON.stringify(p.shape_ref || []), false],
    ['verdict', 'verdict', (p) => p.verdict || p.status, false],
    ['rel_l2_err', 'rel L2', (p) => val(p, 'rel_l2_err'), true],
    ['one_minus_cosine', '1 - cos', (p) => val(p, 'one_minus_cosine'), true],
    ['max_abs_err', 'max abs', (p) => val(p, 'max_abs_err'), true],
    ['max_rel_err', 'max rel', (p) => val(p, 'max_rel_err'), true],
    ['expected_err', 'expected', (p) => val(p, 'expected_err'), true]];

  function cellValue(row, c) { return c[0] === 'run' ? runs[row.r].label : c[2](row.p); }

  function refilter() {
    visible = all.filter((row) => passes(row.p));
    const c = COLS.find((c) => c[0] === st.sortKey);
    const dir = st.sortDir;
    visible.sort((a, b) => {
      let x = cellValue(a, c), y = cellValue(b, c);
      if (c[3]) {
        const nx = isNaN(x), ny = isNaN(y);
        if (nx || ny) return nx === ny ? a.r - b.r : (nx ? 1 : -1);
        return (x - y) * dir || a.r - b.r || a.i - b.i;
      }
      return String(x).localeCompare(String(y)) * dir || a.r - b.r || a.i - b.i;
    });
    $('filterinfo').textContent = visible.length + ' of ' + all.length + ' rows';
    $('tspacer').style.height = (visible.length * ROW_H) + 'px';
    $('tooltip').hidden = true;
    const body = $('tbody');
    body.scrollTop = 0;
    renderRows();
    if (st.sel) scrollToRow(st.sel.r, st.sel.i);
    draw();
  }

  // ---- table -----------------------------------------------------------------------------
  function header() {
    $('thead').innerHTML = COLS.map((c) => {
      const arrow = c[0] === st.sortKey ? (st.sortDir > 0 ? ' ▲' : ' ▼') : '';
      return '<div data-key="' + c[0] + '"' + (c[3] ? ' class="num"' : '') + '>' + esc(c[1]) + arrow + '</div>';
    }).join('');
  }
  $('thead').addEventListener('click', (e) => {
    const k = e.target.closest('[data-key]');
    if (!k) return;
    const key = k.dataset.key;
    if (st.sortKey === key) st.sortDir = -st.sortDir; else { st.sortKey = key; st.sortDir = key === 'order' || key === 'name' ? 1 : -1; }
    header(); refilter();
  });

  function renderRows() {
    const body = $('tbody');
    const first = Math.max(0, Math.floor(body.scrollTop / ROW_H) - 5);
    const last = Math.min(visible.length, first + Math.ceil(body.clientHeight / ROW_H) + 10);
    let h = '';
    for (let k = first; k < last; k++) {
      const row = visible[k];
      const sel = st.sel && st.sel.r === row.r && st.sel.i === row.i ? ' sel' : '';
      h += '<div class="row' + sel + '" data-k="' + k + '" style="top:' + (k * ROW_H) + 'px">';
      for (const c of COLS) {
        const v = cellValue(row, c);
        let cls = c[3] ? 'num' : '';
        if (c[0] === 'verdict') cls = 'v-' + v;
        const text = c[0] === 'run' ? '<span class="swatch" style="background:' + color(row.r) + '"></span>' + esc(v) : esc(c[3] ? fmt(v) : v);
        h += '<div class="' + cls + '" title="' + esc(c[3] ? fmt(v) : v) + '">' + text + '</div>';
      }
      h += '</div>';
    }
    $('trows').innerHTML = h;
  }
  $('tbody').addEventListener('scroll', renderRows);
  $('trows').addEventListener('click', (e) => {
    const el = e.target.closest('.row');
    if (!el) return;
    const row = visible[+el.dataset.k];
    select(row.r, row.i, false);
    const x = row.p.order;
    if (x < st.x0 || x > st.x1) { const w = st.x1 - st.x0; st.x0 = x - w / 2; st.x1 = x + w / 2; }
    draw();
  });

  function scrollToRow(r, i) {
    const k = visible.findIndex((row) => row.r === r && row.i === i);
    if (k < 0) return;
    const body = $('tbody');
    body.scrollTop = Math.max(0, k * ROW_H - body.clientHeight / 3);
    renderRows();
  }

  // ---- selection and close-ups -----------------------------------------------------------
  function select(r, i, scroll) {
    st.sel = { r: r, i: i };
    const p = runs[r].pairs[i];
    const img = D.images[r + ':' + i];
    let h = '<h3>' + esc(p.name) + ' <span class="muted">(' + esc(runs[r].label) + ')</span></h3>';
    if (img) {
      h += img.hist ? '<img alt="error histogram" src="' + img.hist + '">' : '<p class="muted">histogram failed: ' + esc(img.hist_error || '') + '</p>';
      h += img.heat ? '<img alt="error heatmap" src="' + img.heat + '">' : '<p class="muted">heatmap failed: ' + esc(img.heat_error || '') + '</p>';
    } else {
      h += '<p class="muted">No close-up was pre-rendered for this layer (the report embeds them for the ' +
        D.closeups + ' worst pairs of each run and its first divergence). Run <code>driftscope plot REF DEV --tensor ' +
        esc(p.name) + ' -o heat.png</code> for one.</p>';
    }
    $('detail').innerHTML = h;
    if (scroll) scrollToRow(r, i); else renderRows();
  }

  // ---- chart -----------------------------------------------------------------------------
  const cv = $('chart');
  const PAD = { l: 74, r: 16, t: 14, b: 44 };
  function size() {
    const dpr = window.devicePixelRatio || 1;
    const w = cv.clientWidth, h = cv.clientHeight;
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
    }
    return { w: w, h: h, dpr: dpr };
  }
  function lowerBound(arr, x) {
    let lo = 0, hi = arr.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (arr[m].x < x) lo = m + 1; else hi = m; }
    return lo;
  }
  function yv(p) {
    const v = val(p, st.metric);
    if (st.log) return v > 0 ? Math.log10(v) : NaN;
    return v;
  }

  function draw() {
    const s = size();
    const ctx = cv.getContext('2d');
    ctx.setTransform(s.dpr, 0, 0, s.dpr, 0, 0);
    ctx.clearRect(0, 0, s.w, s.h);
    const W = s.w - PAD.l - PAD.r, H = s.h - PAD.t - PAD.b;
    const band = st.metric === 'rel_l2_err';
    // Visible points per run, and the y range over them.
    let y0 = Infinity, y1 = -Infinity;
    const vis = points.map((pts, r) => {
      const out = [];
      for (let k = lowerBound(pts, st.x0); k < pts.length && pts[k].x <= st.x1; k++) {
        const p = runs[r].pairs[pts[k].i];
        if (!passes(p)) continue;
        const y = yv(p);
        out.push({ x: pts[k].x, i: pts[k].i, y: y });
        if (!isNaN(y)) { y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
      }
      return out;
    });
    if (!isFinite(y0)) { y0 = 0; y1 = 1; }
    if (st.log) { y0 = Math.floor(y0); y1 = Math.ceil(y1); }
    if (y1 - y0 < 1e-12) { y1 = y0 + 1; }
    const pad = st.log ? 0 : (y1 - y0) * 0.05;
    y0 -= pad; y1 += pad;
    const X = (x) => PAD.l + (x - st.x0) / (st.x1 - st.x0) * W;
    const Y = (y) => PAD.t + (1 - (y - y0) / (y1 - y0)) * H;
    // Axes and grid.
    ctx.font = '12px system-ui, sans-serif';
    ctx.strokeStyle = '#e3e3e3'; ctx.fillStyle = '#444'; ctx.lineWidth = 1;
    ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
    const ticks = [];
    if (st.log) {
      const step = Math.max(1, Math.ceil((y1 - y0) / 8));
      for (let e = Math.ceil(y0); e <= y1; e += step) ticks.push([e, '1e' + e]);
    } else {
      const raw = (y1 - y0) / 6, mag = Math.pow(10, Math.floor(Math.log10(raw)));
      const step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw) || raw;
      for (let v = Math.ceil(y0 / step) * step; v <= y1; v += step) ticks.push([v, fmt(v)]);
    }
    for (const [t, label] of ticks) {
      ctx.beginPath(); ctx.moveTo(PAD.l, Y(t)); ctx.lineTo(PAD.l + W, Y(t)); ctx.stroke();
      ctx.fillText(label, PAD.l - 6, Y(t));
    }
    ctx.textAlign = 'center'; ctx.textBaseline = 'top';
    const nx = Math.max(2, Math.floor(W / 220));
    const p0 = points.find((p) => p.length) || [];
    for (let k = 0; k <= nx; k++) {
      const x = st.x0 + (st.x1 - st.x0) * k / nx;
      const j = Math.min(p0.length - 1, lowerBound(p0, x));
      if (j < 0) break;
      const name = runs[points.indexOf(p0)].pairs[p0[j].i].place || '';
      const short = name.replace(/\.forward$/, '');
      ctx.textAlign = k === 0 ? 'left' : (k === nx ? 'right' : 'center');
      ctx.fillText(short.length > 24 ? '…' + short.slice(-23) : short, X(x), PAD.t + H + 6);
    }
    ctx.textAlign = 'center';
    ctx.fillText('execution order (' + Math.round(st.x0 + 0.5) + ' – ' + Math.round(st.x1 - 0.5) + ')', PAD.l + W / 2, PAD.t + H + 24);
    ctx.save(); ctx.translate(14, PAD.t + H / 2); ctx.rotate(-Math.PI / 2);
    ctx.fillText(METRICS.find((m) => m[0] === st.metric)[1] + (st.log ? ' (log)' : ''), 0, -6); ctx.restore();
    ctx.strokeStyle = '#999'; ctx.strokeRect(PAD.l, PAD.t, W, H);
    ctx.save(); ctx.beginPath(); ctx.rect(PAD.l, PAD.t, W, H); ctx.clip();
    // Series, decimated to per-pixel min/max when there are more points than pixels.
    st.hits = [];
    let drawn = 0;
    vis.forEach((pts, r) => {
      const col = color(r);
      if (band) {
        ctx.fillStyle = col; ctx.globalAlpha = 0.08; ctx.beginPath();
        let started = false;
        for (const q of pts) {
          const e = num(runs[r].pairs[q.i].expected_err) * D.noise_factor;
          if (!(e > 0)) continue;
          const y = st.log ? Math.log10(e) : e;
          if (!started) { ctx.moveTo(X(q.x), PAD.t + H); started = true; }
          ctx.lineTo(X(q.x), Y(y));
        }
        if (started) { ctx.lineTo(X(pts[pts.length - 1].x), PAD.t + H); ctx.fill(); }
        ctx.globalAlpha = 1;
      }
      ctx.strokeStyle = col; ctx.fillStyle = col; ctx.lineWidth = 1.5;
      const dense = pts.length > W;
      ctx.beginPath();
      if (dense) {
        let col0 = -1, lo = 0, hi = 0, best = null;
        const flush = () => {
          if (col0 < 0) return;
          ctx.lineTo(col0, lo); ctx.lineTo(col0, hi);
          st.hits.push({ px: col0, py: best.py, r: r, i: best.i });
        };
        for (const q of pts) {
          if (isNaN(q.y)) continue;
          const px = Math.round(X(q.x)), py = Y(q.y);
          if (px !== col0) { flush(); if (col0 < 0) ctx.moveTo(px, py); col0 = px; lo = py; hi = py; best = { py: py, i: q.i }; }
          lo = Math.max(lo, py); hi = Math.min(hi, py);
          if (py < best.py) best = { py: py, i: q.i };
        }
        flush();
        ctx.stroke();
      } else {
        let pen = false;
        for (const q of pts) {
          if (isNaN(q.y)) { pen = false; continue; }
          const px = X(q.x), py = Y(q.y);
          if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
          pen = true;
          st.hits.push({ px: px, py: py, r: r, i: q.i });
        }
        ctx.stroke();
        for (const h of st.hits) if (h.r === r) { ctx.beginPath(); ctx.arc(h.px, h.py, 2.5, 0, 7); ctx.fill(); }
      }
      drawn += pts.length;
    });
    // First divergence of each run.
    runs.forEach((run, r) => {
      if (!run.first) return;
      const x = X(run.first.order);
      ctx.strokeStyle = color(r); ctx.setLineDash([6, 4]); ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(x, PAD.t); ctx.lineTo(x, PAD.t + H); ctx.stroke(); ctx.setLineDash([]);
      ctx.fillStyle = color(r); ctx.textAlign = x > PAD.l + W * 0.6 ? 'right' : 'left'; ctx.textBaseline = 'top';
      ctx.font = 'bold 12px system-ui, sans-serif';
      ctx.fillText(' first divergence (' + run.first.kind + '): ' + run.first.name + ' ', x, PAD.t + 4 + 16 * r);
    });
    if (st.sel) {
      const h = st.hits.find((h) => h.r === st.sel.r && h.i === st.sel.i);
      if (h) { ctx.strokeStyle = '#000'; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(h.px, h.py, 6, 0, 7); ctx.stroke(); }
    }
    ctx.restore();
    cv.dataset.points = String(drawn);
  }

  // ---- interaction -----------------------------------------------------------------------
  function nearest(ev) {
    const b = cv.getBoundingClientRect();
    const mx = ev.clientX - b.left, my = ev.clientY - b.top;
    let best = null, bd = 14 * 14;
    for (const h of st.hits) {
      const d = (h.px - mx) * (h.px - mx) + (h.py - my) * (h.py - my);
      if (d < bd) { bd = d; best = h; }
    }
    return best;
  }
  function tooltip(h, ev) {
    const tt = $('tooltip');
    if (!h) { tt.hidden = true; return; }
    const p = runs[h.r].pairs[h.i];
    const skip = new Set(['name', 'ref_stats', 'dev_stats']);
    let rows = '<tr><td><b>run</b></td><td>' + esc(runs[h.r].label) + '</td></tr>';
    for (const k of Object.keys(p)) {
      if (skip.has(k)) continue;
      const v = p[k];
      rows += '<tr><td>' + esc(k) + '</td><td>' + esc(typeof v === 'object' ? JSON.stringify(v) : fmt(v)) + '</td></tr>';
    }
    tt.innerHTML = '<b>' + esc(p.name) + '</b><table>' + rows + '</table>';
    tt.hidden = false;
    const box = $('chartbox').getBoundingClientRect();
    let left = ev.clientX - box.left + 14;
    if (left + tt.offsetWidth > box.width) left = Math.max(0, ev.clientX - box.left - tt.offsetWidth - 14);
    tt.style.left = left + 'px';
    tt.style.top = (ev.clientY - box.top + 14) + 'px';
  }
  cv.addEventListener('mousemove', (ev) => {
    if (st.drag) {
      const W = cv.clientWidth - PAD.l - PAD.r;
      const dx = (ev.clientX - st.drag.x) / W * (st.drag.x1 - st.drag.x0);
      if (Math.abs(ev.clientX - st.drag.x) > 3) st.drag.moved = true;
      st.x0 = st.drag.x0 - dx; st.x1 = st.drag.x1 - dx;
      draw(); tooltip(null); return;
    }
    tooltip(nearest(ev), ev);
  });
  cv.addEventListener('mouseleave', () => { tooltip(null); st.drag = null; });
  cv.addEventListener('mousedown', (ev) => { st.drag = { x: ev.clientX, x0: st.x0, x1: st.x1, moved: false }; });
  cv.addEventListener('mouseup', (ev) => {
    const d = st.drag; st.drag = null;
    if (d && d.moved) return;
    const h = nearest(ev);
    if (h) { select(h.r, h.i, true); draw(); }
  });
  cv.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    const b = cv.getBoundingClientRect();
    const W = b.width - PAD.l - PAD.r;
    const f = (ev.clientX - b.left - PAD.l) / W;
    const at = st.x0 + f * (st.x1 - st.x0);
    const k = ev.deltaY > 0 ? 1.25 : 0.8;
    const w = Math.max(2, Math.min((xmax - xmin + 1) * 1.2, (st.x1 - st.x0) * k));
    st.x0 = at - f * w; st.x1 = st.x0 + w;
    draw();
  }, { passive: false });
  $('resetzoom').addEventListener('click', () => { st.x0 = xmin - 0.5; st.x1 = xmax + 0.5; draw(); });
  $('logscale').addEventListener('change', (e) => { st.log = e.target.checked; draw(); });
  const msel = $('metric');
  msel.innerHTML = METRICS.map((m) => '<option value="' + m[0] + '">' + esc(m[1]) + '</option>').join('');
  msel.addEventListener('change', () => { st.metric = msel.value; draw(); });
  const osel = $('optype');
  osel.innerHTML += Array.from(ops).sort().map((o) => '<option>' + esc(o) + '</option>').join('');
  osel.addEventListener('change', () => { st.op = osel.value; refilter(); });
  $('filter').addEventListener('input', (e) => {
    const t = e.target.value.trim();
    const m = /^\/(.*)\/$/.exec(t);
    try { st.re = t ? new RegExp(m ? m[1] : t, 'i') : null; $('filter').style.background = ''; }
    catch (err) { st.re = null; $('filter').style.background = '#fdd'; }
    refilter();
  });
  window.addEventListener('resize', () => { draw(); renderRows(); trender(); });

  // ---- summary ---------------------------------------------------------------------------
  $('summary').innerHTML = '<div class="muted">reference: ' + esc(D.reference || '') + ' · driftscope ' + esc(D.tool_version) + '</div>' +
    runs.map((run, r) => '<div><span class="swatch" style="background:' + color(r) + '"></span><b>' + esc(run.label) +
      '</b>: ' + esc(run.summary) + '</div>' +
      (run.structure || []).map((m) => '<div class="muted">structure: ' + esc(m) + '</div>').join('')).join('');
  $('legend').innerHTML = runs.map((run, r) => '<span><span class="swatch" style="background:' + color(r) + '"></span>' + esc(run.label) + '</span>').join('') +
    '<span class="muted">shaded: expected noise (' + D.noise_factor + 'x rounding), for relative L2 error</span>';

  // Hooks for the browser test and for scripting the page.
  window.driftscope = {
    treeNodes: () => TN,
    treeVisible: () => tvis.length,
    treeRendered: () => $('treerows').children.length,
    treeNodeFilter: () => st.node,
    pointCount: (r) => points[r || 0].length,
    drawnPoints: () => +cv.dataset.points,
    visibleRows: () => visible.length,
    totalRows: () => all.length,
    renderedRows: () => $('trows').children.length,
    hit: (k) => { const h = st.hits[k || 0]; if (!h) return null; const b = cv.getBoundingClientRect(); return { x: b.left + h.px, y: b.top + h.py }; },
  };
  header();
  tflatten();
  const f0 = tfirst.indexOf(1);
  if (f0 >= 0) tscrollTo(f0);
  trender();
  refilter();
})();
