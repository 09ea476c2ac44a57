// The gateway dashboard: tables, hand-drawn SVG charts and trace
// waterfalls from the admin endpoints. No libraries, no CDN: it works
// offline. Every figure comes from /admin/stats, /admin/series,
// /admin/traces, /admin/config or /admin/bench, as named next to it.
"use strict";

const SIZE_CLASSES = [
  { id: "le_1KiB", lo: 64, hi: 1024 },
  { id: "le_16KiB", lo: 1024, hi: 16384 },
  { id: "le_256KiB", lo: 16384, hi: 262144 },
  { id: "le_4MiB", lo: 262144, hi: 4194304 },
  { id: "gt_4MiB", lo: 4194304, hi: 16777216 },
];
const COLORS = {
  native: "#0a7d32", "spin-embedded": "#5b3cc4", "spin-external": "#8a5cf6", gateway: "#888888",
  wasm_fresh: "#5b3cc4", wasm_reuse: "#a48af0",
  match: "#0a7d32", mismatch: "#d0312d", dropped: "#999999",
};
const REASON_COLORS = ["#d0312d", "#e8871e", "#c9a400", "#2b8cbe", "#7b3294", "#555555", "#1b9e77", "#e7298a"];
const state = { stats: null, previous: null, series: null, config: null, bench: null, traces: [], recording: null };

const isWasm = b => b === "spin-embedded" || b === "spin-external";
const num = v => typeof v === "number" && Number.isFinite(v);
const fmt = (v, d = 2) => num(v) ? v.toFixed(d) : "–";
function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function bytes(n) {
  if (!num(n)) return "–";
  if (n >= 1 << 20) return `${+(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}
function color(name, i = 0) { return COLORS[name] || REASON_COLORS[i % REASON_COLORS.length]; }

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// ---- totals (per backend, since start) ----

function rate(route, backend, count, uptime) {
  const prev = state.previous;
  if (!prev) return NaN;
  const r = prev.routes.find(r => r.route === route);
  const b = r && r.backends.find(b => b.backend === backend);
  const dt = uptime - prev.uptime_s;
  return dt > 0 ? (count - (b ? b.count : 0)) / dt : NaN;
}

function totalsTable(route, uptime) {
  const maxP99 = Math.max(...route.backends.map(b => b.p99_ms), 0.001);
  const rows = route.backends.map(b => `
    <tr class="${esc(b.backend)}" data-backend="${esc(b.backend)}">
      <td>${esc(b.backend)}</td><td class="count">${b.count}</td>
      <td class="rps">${fmt(rate(route.route, b.backend, b.count, uptime), 1)}</td>
      <td class="p50">${fmt(b.p50_ms, 3)}</td><td class="p95">${fmt(b.p95_ms, 3)}</td>
      <td class="p99">${fmt(b.p99_ms, 3)}</td>
      <td><span class="bar" style="width:${Math.round(120 * b.p99_ms / maxP99)}px"></span></td>
      <td class="traces"><a href="#slowest=${encodeURIComponent(route.route)}/${encodeURIComponent(b.backend)}">slowest traces</a></td>
    </tr>`).join("");
  return `<table class="totals"><thead><tr><th>backend</th><th>requests</th><th>req/s</th><th>p50 ms</th>
    <th>p95 ms</th><th>p99 ms</th><th>p99</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
}

function metaLine(route) {
  const reasons = Object.entries(route.fallbacks).map(([k, v]) => `${esc(k)}: ${v}`).join(", ") || "none";
  const s = route.shadow || {}, compared = (s.match || 0) + (s.mismatch || 0);
  const shadow = compared
    ? `${fmt(100 * (s.match || 0) / compared, 1)}% match (${s.match || 0}/${compared}, ${s.dropped || 0} dropped)`
    : "no samples";
  return `<div class="meta">Fallbacks to native: <span class="fallbacks">${reasons}</span> · Shadow: <span class="shadow">${shadow}</span></div>`;
}

// ---- per size class: Wasm vs native on equal work ----

/// The Wasm and native figures of one class (the busiest Wasm backend).
function sides(cls) {
  const backends = (cls && cls.backends) || [];
  const wasm = backends.filter(b => isWasm(b.backend)).sort((a, b) => b.count - a.count)[0];
  const native = backends.find(b => b.backend === "native");
  return { wasm, native };
}

/// Which path is faster in a class: from shadow pairs when there are any
/// (one request run both ways), else from the two p50s.
function verdict(wasm, native, paired) {
  if (paired && paired.pairs > 0 && num(paired.ratio_p50)) {
    return { ratio: paired.ratio_p50, basis: "paired" };
  }
  if (wasm && native && native.p50_ms > 0) return { ratio: wasm.p50_ms / native.p50_ms, basis: "p50" };
  return null;
}

function verdictCell(v, wasm, native) {
  if (!v) {
    const why = !native ? "no native data in this class" : !wasm ? "no Wasm data" : "not enough data";
    return `<td class="verdict missing">${why}</td>`;
  }
  const faster = v.ratio > 1 ? "native" : "Wasm";
  const factor = v.ratio > 1 ? v.ratio : 1 / v.ratio;
  const cls = v.ratio > 1 ? "faster-native" : "faster-wasm";
  return `<td class="verdict ${cls}" data-faster="${faster.toLowerCase()}" data-basis="${v.basis}">${faster} ${fmt(factor, 2)}× faster <span class="note">(${v.basis === "paired" ? "paired" : "p50s"})</span></td>`;
}

function sideCells(side, which) {
  if (!side) {
    const text = which === "native" ? "no native data in this class" : "no Wasm data";
    return `<td colspan="3" class="missing ${which}-missing">${text}</td>`;
  }
  return `<td class="${which}-count">${side.count}${which === "wasm" ? ` <span class="note">${esc(side.backend)}</span>` : ""}</td>
    <td class="${which}-p50" data-value="${side.p50_ms}">${fmt(side.p50_ms, 3)}</td>
    <td class="${which}-p99" data-value="${side.p99_ms}">${fmt(side.p99_ms, 3)}</td>`;
}

function pairedCells(p) {
  if (!p || !p.pairs) return `<td colspan="5" class="missing paired-missing">no shadow pairs</td>`;
  const ratio = (key) => `<td class="${key.replace("_", "-")}" data-value="${p[key]}">${num(p[key]) ? fmt(p[key], 2) + "×" : "–"}</td>`;
  return `<td class="pairs" data-value="${p.pairs}">${p.pairs}</td>${ratio("ratio_p10")}${ratio("ratio_p50")}${ratio("ratio_p90")}
    <td class="match-rate" data-value="${p.match_rate}">${fmt(100 * p.match_rate, 1)}%</td>`;
}

function classTable(route) {
  const classes = route.classes || [], paired = route.paired || [];
  const ids = SIZE_CLASSES.map(c => c.id).filter(id => classes.some(c => c.size_class === id) || paired.some(p => p.size_class === id));
  if (!ids.length) return `<p class="empty">No per-size-class figures in /admin/stats yet.</p>`;
  const rows = ids.map(id => {
    const cls = classes.find(c => c.size_class === id);
    const p = paired.find(p => p.size_class === id);
    const { wasm, native } = sides(cls);
    const label = (cls && cls.label) || (p && p.label) || id;
    return `<tr data-class="${id}"><td>${esc(label)}</td>${sideCells(wasm, "wasm")}${sideCells(native, "native")}
      ${verdictCell(verdict(wasm, native, p), wasm, native)}${pairedCells(p)}</tr>`;
  }).join("");
  return `<table class="classes"><thead>
    <tr><th rowspan="2">body size</th><th colspan="3" class="wasm">Wasm</th><th colspan="3" class="native">native</th><th rowspan="2" class="verdict">faster</th><th colspan="5">shadow pairs (Wasm ÷ native, same request)</th></tr>
    <tr><th>requests</th><th>p50 ms</th><th>p99 ms</th><th>requests</th><th>p50 ms</th><th>p99 ms</th><th>pairs</th><th>p10</th><th>p50</th><th>p90</th><th>match</th></tr>
    </thead><tbody>${rows}</tbody></table>
    <div class="note">A ratio above 1× means Wasm took longer than native for the same request. "faster" uses the paired ratio when
    the class has shadow pairs, else the two p50s.</div>`;
}

// ---- learned routing: each path's estimate per class ----

/// Why a learned route has no crossover, in words.
function learnedWhyNone(classes) {
  const chosen = [...new Set(classes.map(c => c.choice).filter(Boolean))];
  if (!chosen.length) return "still warming up";
  if (chosen.length === 1) return `${chosen[0] === "native" ? "native" : "Wasm"} serves every class with traffic`;
  return "the choice changes path more than once across the classes";
}

/// A learned route's estimates (`learned` in /admin/stats): per class, the
/// path it picked, each path's Peak-EWMA estimate, CPU time, predicted
/// cost and share of the requests, and where the choice changes path.
function learnedTable(route) {
  const l = route.learned;
  if (!l) return "";
  const classes = l.classes || [];
  if (!classes.length) return `<h3>Learned routing</h3><p class="empty">No requests learned from yet.</p>`;
  const side = (c, p) => {
    const s = c[p];
    const wait = p === "native"
      ? `<td class="native-wait" data-value="${num(s.wait_ms) ? s.wait_ms : ""}">${fmt(s.wait_ms, 3)}</td>`
      : "";
    return `<td class="${p}-estimate" data-value="${num(s.estimate_ms) ? s.estimate_ms : ""}">${fmt(s.estimate_ms, 3)}</td>${wait}
      <td class="${p}-cpu" data-value="${num(s.cpu_ms) ? s.cpu_ms : ""}">${fmt(s.cpu_ms, 3)}</td>
      <td class="${p}-predicted" data-value="${num(s.predicted_ms) ? s.predicted_ms : ""}">${fmt(s.predicted_ms, 3)}</td>
      <td class="${p}-share" data-value="${s.share}">${fmt(100 * s.share, 1)}% <span class="note">of ${c.wasm.requests + c.native.requests}</span></td>
      <td class="${p}-evidence" data-value="${s.evidence}">${s.evidence >= l.tuning.min_samples / 2 ? fmt(s.evidence, 1) : `<span class="missing">stale (${fmt(s.evidence, 1)})</span>`}</td>`;
  };
  const rows = classes.map(c => {
    const choice = c.choice
      ? `<td class="choice ${c.choice === "native" ? "faster-native" : "faster-wasm"}" data-choice="${c.choice}">${c.choice === "native" ? "native" : "Wasm"}</td>`
      : `<td class="choice missing" data-choice="">warming up</td>`;
    return `<tr data-learned-class="${c.size_class}"><td>${esc(c.label)}</td>${choice}${side(c, "wasm")}${side(c, "native")}
      <td class="explored" data-value="${c.explored}">${c.explored}</td><td class="switches" data-value="${c.switches}">${c.switches}</td></tr>`;
  }).join("");
  const x = l.crossover;
  const cross = x
    ? `<div class="suggest learned" data-bytes="${x.bytes}" data-native="${x.native}">Learned crossover: native serves bodies ${x.native === "above" ? "larger" : "up to"} ${bytes(x.bytes)}${x.native === "above" ? "" : ", Wasm the larger ones"} (between the ${esc(x.between[0])} and ${esc(x.between[1])} classes).</div>`
    : `<div class="suggest learned" data-bytes="">Learned crossover: none (${learnedWhyNone(classes)}).</div>`;
  return `<h3>Learned routing: where each request goes, and why</h3>
    <table class="learned"><thead>
    <tr><th rowspan="2">body size</th><th rowspan="2">path now</th><th colspan="5" class="wasm">Wasm</th><th colspan="6" class="native">native</th><th rowspan="2">explored</th><th rowspan="2">switches</th></tr>
    <tr><th>estimate ms</th><th>CPU ms</th><th>cost ms</th><th>share</th><th>evidence</th><th>compute ms</th><th>wait ms</th><th>CPU ms</th><th>cost ms</th><th>share</th><th>evidence</th></tr>
    </thead><tbody>${rows}</tbody></table>${cross}
    <div class="note">Estimate: Peak-EWMA of the path's latency in the class (live answers and shadow runs); it takes a slow answer at once and
    forgets it over seconds, so it sits nearer the p99 than the p50 above. On native it is the compute time after a worker took the request;
    wait: how long a request sent now would wait for one of the ${fmt(l.tuning.workers, 0)} native workers, from the requests in flight on them now.
    <span class="saturation" data-saturation="${l.saturation}" data-counted="${l.wait_counted}">The workers were all busy for ${fmt(100 * l.saturation, 0)}% of the route's recent requests, so native's cost counts ${fmt(100 * l.wait_counted, 0)}% of its wait</span>:
    a wait few requests meet is a burst worth skipping on Wasm; one every request meets is the route's steady state, where skipping it only takes the CPU from the requests ahead.
    CPU: the gateway's CPU time per request on the path, all threads.
    Cost, what the choice compares: Wasm's estimate scaled by the requests in flight on it now, or native's compute plus the counted wait, plus what the path's CPU time costs
    the ${l.in_flight} requests in flight on the route, on both paths, which share the cores (${l.in_flight} &times; CPU / ${fmt(l.tuning.cores, 0)} cores). A class moves only when the other path's cost is ${fmt(100 * l.tuning.hysteresis, 0)}% lower and
    ${l.tuning.confirm} answers in a row cost more than that, at least ${l.tuning.min_samples} answers after its last move; evidence below ${l.tuning.min_samples / 2} samples is stale and gets at most ${fmt(100 * l.tuning.explore_share, 0)}% of the class's requests to re-measure it.</div>`;
}

// ---- the crossover: latency against body size ----

/// The smallest size where native is faster in the live data: the
/// `native_above_bytes` it suggests (the lower edge of that class).
function liveSuggestion(route) {
  for (const c of SIZE_CLASSES) {
    const cls = (route.classes || []).find(x => x.size_class === c.id);
    const p = (route.paired || []).find(x => x.size_class === c.id);
    const { wasm, native } = sides(cls);
    const v = verdict(wasm, native, p);
    if (v && v.ratio > 1) return { bytes: c.id === "le_1KiB" ? 0 : c.lo, basis: v.basis, label: (cls || p).label };
  }
  return null;
}

function logScale(lo, hi, a, b) {
  const l0 = Math.log(lo), l1 = Math.log(hi);
  return v => a + (b - a) * (Math.log(Math.max(v, lo)) - l0) / (l1 - l0);
}

function crossoverData(route, bench) {
  const live = [];
  for (const cls of route.classes || []) {
    const range = SIZE_CLASSES.find(c => c.id === cls.size_class);
    if (!range) continue;
    for (const b of cls.backends) {
      if (b.backend === "native" || isWasm(b.backend)) live.push({ range, backend: b.backend, ms: b.p50_ms, count: b.count, label: cls.label });
    }
  }
  const curves = [];
  if (bench && bench.available !== false && Array.isArray(bench.rows)) {
    for (const side of ["native", "wasm_fresh", "wasm_reuse"]) {
      const pts = bench.rows.filter(r => r[side] && num(r[side].mean_ms)).map(r => ({ bytes: r.body_bytes, ms: r[side].mean_ms }));
      if (pts.length) curves.push({ side, pts });
    }
  }
  return { live, curves };
}

function crossoverChart(route, configRoute, bench) {
  const { live, curves } = crossoverData(route, bench);
  const W = 640, H = 260, L = 56, R = 16, T = 14, B = 40;
  const xs = [64, 16777216, ...curves.flatMap(c => c.pts.map(p => p.bytes))];
  const ys = [...live.map(p => p.ms), ...curves.flatMap(c => c.pts.map(p => p.ms))].filter(v => v > 0);
  if (!ys.length) return `<p class="empty">No latency figures to draw yet.</p>`;
  const x = logScale(Math.min(...xs), Math.max(...xs), L, W - R);
  const y = logScale(Math.min(...ys) / 1.5, Math.max(...ys) * 1.5, H - B, T);
  const parts = [];
  for (const v of [100, 1024, 16384, 262144, 4194304]) {
    parts.push(`<line x1="${x(v)}" x2="${x(v)}" y1="${T}" y2="${H - B}" stroke="#eee"/><text x="${x(v)}" y="${H - B + 14}" text-anchor="middle">${bytes(v)}</text>`);
  }
  const [ylo, yhi] = [Math.min(...ys) / 1.5, Math.max(...ys) * 1.5];
  for (let v = Math.pow(10, Math.ceil(Math.log10(ylo))); v <= yhi; v *= 10) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="${L - 4}" y="${y(v) + 4}" text-anchor="end">${v >= 1 ? v : v.toPrecision(1)} ms</text>`);
  }
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle">request body size (log)</text>`);
  for (const c of curves) {
    const pts = c.pts.map(p => `${x(p.bytes).toFixed(1)},${y(p.ms).toFixed(1)}`).join(" ");
    parts.push(`<polyline class="bench" data-line="bench-${c.side}" points="${pts}" fill="none" stroke="${color(c.side)}" stroke-width="1.5" stroke-dasharray="5 3"><title>bench ${c.side}: mean latency per batch size</title></polyline>`);
  }
  for (const p of live) {
    const yy = y(p.ms), mid = Math.sqrt(p.range.lo * p.range.hi);
    parts.push(`<g class="live" data-line="live-${esc(p.backend)}" data-class="${p.range.id}"><line x1="${x(p.range.lo)}" x2="${x(p.range.hi)}" y1="${yy}" y2="${yy}" stroke="${color(p.backend)}" stroke-width="3" opacity=".6"/>
      <circle cx="${x(mid)}" cy="${yy}" r="4" fill="${color(p.backend)}"><title>${esc(p.backend)} ${esc(p.label)}: p50 ${fmt(p.ms, 3)} ms over ${p.count} requests</title></circle></g>`);
  }
  const marks = crossoverMarks(route, configRoute, bench, x, T, H - B);
  parts.push(marks.svg);
  const legend = `<div class="note"><span class="wasm">━ Wasm</span> · <span class="native">━ native</span>: live p50 per size class (a bar spans the class).
    ${curves.length ? "Dashed: the last bench report's mean latency per batch size (wasm_fresh, wasm_reuse, native)." : "No bench report (run <code>cargo xtask bench</code>)."}</div>`;
  return `<svg class="chart crossover" data-chart="crossover" data-points="${live.length + curves.reduce((n, c) => n + c.pts.length, 0)}" viewBox="0 0 ${W} ${H}">${parts.join("")}</svg>${legend}${marks.text}`;
}

function crossoverMarks(route, configRoute, bench, x, top, bottom) {
  let svg = "", text = "";
  const configured = configRoute && configRoute.fallback ? configRoute.fallback.native_above_bytes : null;
  const learned = route.learned && route.learned.crossover;
  if (configured === "learn") {
    if (learned) {
      const xx = x(Math.max(learned.bytes, 64));
      svg += `<line class="learned" x1="${xx}" x2="${xx}" y1="${top}" y2="${bottom}" stroke="#d0312d" stroke-width="1.5"/><text x="${xx + 4}" y="${top + 10}" fill="#d0312d">learned: native ${learned.native === "above" ? "above" : "below"}</text>`;
    }
    text += `<div class="suggest configured" data-bytes="learn">Configured: <code>native_above_bytes = "learn"</code>; each request goes to the path with the lower predicted cost for its size: its latency plus the CPU it takes from the requests in flight (table above).</div>`;
  } else if (num(configured)) {
    const xx = x(Math.max(configured, 64));
    svg += `<line class="configured" x1="${xx}" x2="${xx}" y1="${top}" y2="${bottom}" stroke="#d0312d" stroke-width="1.5"/><text x="${xx + 4}" y="${top + 10}" fill="#d0312d">native_above_bytes</text>`;
    text += `<div class="suggest configured" data-bytes="${configured}">Configured: <code>native_above_bytes = ${configured}</code> (${bytes(configured)}); bigger bodies go straight to native.</div>`;
  } else {
    text += `<div class="suggest configured">This route has no size rule (<code>native_above_bytes</code> unset).</div>`;
  }
  const live = liveSuggestion(route);
  if (live) {
    const xx = x(Math.max(live.bytes, 64));
    svg += `<line class="suggested" x1="${xx}" x2="${xx}" y1="${top}" y2="${bottom}" stroke="#e8871e" stroke-width="1.5" stroke-dasharray="4 3"/><text x="${xx + 4}" y="${top + 24}" fill="#e8871e">live data</text>`;
    text += `<div class="suggest live" data-bytes="${live.bytes}">Live data suggests <code>native_above_bytes = ${live.bytes}</code>: native is faster from the ${esc(live.label)} class up (${live.basis === "paired" ? "paired ratios" : "p50s"}).</div>`;
  } else {
    text += `<div class="suggest live" data-bytes="">Live data: not enough data for a suggestion (no size class has both paths, or shadow pairs, where native is faster).</div>`;
  }
  if (bench && bench.available !== false && num(bench.suggested_native_above_bytes)) {
    const b = bench.suggested_native_above_bytes, xx = x(Math.max(b, 64));
    svg += `<line class="bench-suggested" x1="${xx}" x2="${xx}" y1="${top}" y2="${bottom}" stroke="#2b8cbe" stroke-width="1.5" stroke-dasharray="2 2"/><text x="${xx + 4}" y="${top + 38}" fill="#2b8cbe">bench</text>`;
    text += `<div class="suggest bench" data-bytes="${b}">The bench report (${esc(bench.mode || "")}, ${esc(bench.commit || "")}) suggests <code>native_above_bytes = ${b}</code>: ${esc(bench.suggestion_basis || "")}</div>`;
  }
  return { svg, text };
}

// ---- the last 15 minutes, second by second ----

function timeAxes(W, H, L, B, T, now, seconds, ymax, unit) {
  const x = t => L + (W - L - 8) * (t - (now - seconds)) / seconds;
  const y = v => H - B - (H - B - T) * v / ymax;
  let svg = `<line x1="${L}" x2="${W - 8}" y1="${H - B}" y2="${H - B}" stroke="#ccc"/>`;
  for (const m of [15, 10, 5, 0]) {
    const xx = x(now - m * 60);
    svg += `<line x1="${xx}" x2="${xx}" y1="${T}" y2="${H - B}" stroke="#f0f0f0"/><text x="${xx}" y="${H - B + 13}" text-anchor="middle">${m ? `−${m} min` : "now"}</text>`;
  }
  svg += `<text x="${L - 4}" y="${T + 8}" text-anchor="end">${fmt(ymax, ymax < 10 ? 2 : 0)}</text><text x="${L - 4}" y="${H - B}" text-anchor="end">0</text>`;
  return { x, y, svg };
}

/// Polylines over runs of consecutive seconds (a gap breaks the line);
/// a lone second is a dot.
function runs(points, x, y, stroke, dash, title) {
  const out = [];
  let run = [];
  const flush = () => {
    if (run.length === 1) out.push(`<circle cx="${x(run[0].t)}" cy="${y(run[0].v)}" r="1.8" fill="${stroke}"><title>${title}</title></circle>`);
    else if (run.length > 1) out.push(`<polyline points="${run.map(p => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ")}" fill="none" stroke="${stroke}" stroke-width="1.5"${dash ? ` stroke-dasharray="${dash}"` : ""}><title>${title}</title></polyline>`);
    run = [];
  };
  for (const p of points) {
    if (run.length && p.t - run[run.length - 1].t > 1) flush();
    run.push(p);
  }
  flush();
  return out.join("");
}

function chartFrame(kind, caption, count, body, legend) {
  return `<figure><figcaption>${caption}</figcaption><svg class="chart" data-chart="${kind}" data-points="${count}" viewBox="0 0 440 150">${body}</svg>
    <div class="note">${legend}</div></figure>`;
}

function latencyChart(r, now, seconds) {
  const all = r.backends.flatMap(b => b.points);
  const ymax = Math.max(0.001, ...all.map(p => p.p99_ms)) * 1.1;
  const ax = timeAxes(440, 150, 44, 20, 10, now, seconds, ymax, "ms");
  const lines = r.backends.map(b =>
    runs(b.points.map(p => ({ t: p.t, v: p.p50_ms })), ax.x, ax.y, color(b.backend), "", `${b.backend} p50`) +
    runs(b.points.map(p => ({ t: p.t, v: p.p99_ms })), ax.x, ax.y, color(b.backend), "3 2", `${b.backend} p99`)).join("");
  const legend = r.backends.map(b => `<span class="${esc(b.backend)}">${esc(b.backend)}</span>`).join(" · ") + " — solid p50, dashed p99 (per second, ±20%)";
  return chartFrame("latency", "Latency per backend (ms)", all.length, ax.svg + lines, legend);
}

function throughputChart(r, now, seconds) {
  const all = r.backends.flatMap(b => b.points);
  const ymax = Math.max(1, ...all.map(p => p.count)) * 1.1;
  const ax = timeAxes(440, 150, 44, 20, 10, now, seconds, ymax, "req/s");
  const lines = r.backends.map(b => {
    const byT = new Map(b.points.map(p => [p.t, p.count]));
    const first = b.points.length ? b.points[0].t : now;
    const pts = [];
    for (let t = first; t <= now; t++) pts.push({ t, v: byT.get(t) || 0 });
    return runs(pts, ax.x, ax.y, color(b.backend), "", `${b.backend} requests per second`);
  }).join("");
  const legend = r.backends.map(b => `<span class="${esc(b.backend)}">${esc(b.backend)}</span>`).join(" · ") + " — requests per second";
  return chartFrame("throughput", "Throughput per backend (requests per second)", all.length, ax.svg + lines, legend);
}

/// Stacked bars per second, one colour per named count.
function stackedChart(kind, caption, lines, now, seconds, unit, empty) {
  const perT = new Map();
  lines.forEach(l => l.points.forEach(p => perT.set(p.t, (perT.get(p.t) || 0) + p.count)));
  const ymax = Math.max(1, ...perT.values()) * 1.1;
  const ax = timeAxes(440, 150, 44, 20, 10, now, seconds, ymax, unit);
  const base = new Map();
  const w = Math.max(1, (440 - 52) / seconds);
  const bars = lines.map((l, i) => l.points.map(p => {
    const below = base.get(p.t) || 0;
    base.set(p.t, below + p.count);
    return `<rect x="${ax.x(p.t).toFixed(1)}" y="${ax.y(below + p.count).toFixed(1)}" width="${w.toFixed(2)}" height="${(ax.y(below) - ax.y(below + p.count)).toFixed(1)}" fill="${color(l.name, i)}"><title>${esc(l.name)}: ${p.count}</title></rect>`;
  }).join("")).join("");
  const count = lines.reduce((n, l) => n + l.points.length, 0);
  const legend = lines.length
    ? lines.map((l, i) => `<span style="color:${color(l.name, i)}">■ ${esc(l.name)}</span> ${l.points.reduce((n, p) => n + p.count, 0)}`).join(" · ") + " in 15 min"
    : empty;
  return chartFrame(kind, caption, count, ax.svg + bars, legend);
}

function seriesCharts(routeName) {
  const s = state.series;
  const r = s && s.routes.find(r => r.route === routeName);
  if (!r) return `<p class="empty">No per-second data for this route yet.</p>`;
  const shadow = r.shadow.filter(l => l.points.length);
  return `<div class="charts">${latencyChart(r, s.now, s.seconds)}${throughputChart(r, s.now, s.seconds)}
    ${stackedChart("fallbacks", "Fallbacks to native, by reason (per second)", r.fallbacks, s.now, s.seconds, "per s", "no fallbacks in 15 min")}
    ${stackedChart("shadow", "Shadow comparisons, by result (per second)", shadow, s.now, s.seconds, "per s", "no shadow comparisons in 15 min")}</div>`;
}

// ---- routes ----

function configFor(name) {
  return state.config && state.config.routes ? state.config.routes.find(r => r.name === name) : null;
}

function renderRoutes() {
  const snapshot = state.stats;
  if (!snapshot || !snapshot.routes.length) return;
  const root = document.getElementById("routes");
  root.innerHTML = "";
  for (const route of snapshot.routes) {
    const section = document.createElement("section");
    section.dataset.route = route.route;
    const cfg = configFor(route.route);
    const bench = cfg && cfg.native === "validate" ? state.bench : null;
    const crossover = cfg && cfg.native
      ? `<h3>Crossover: latency against body size</h3>${crossoverChart(route, cfg, bench)}`
      : "";
    section.innerHTML = `<h2>${esc(route.route)}</h2>${totalsTable(route, snapshot.uptime_s)}${metaLine(route)}
      <h3>Wasm vs native by request size (since start)</h3>${classTable(route)}
      ${learnedTable(route)}${crossover}<h3>Last 15 minutes</h3>${seriesCharts(route.route)}`;
    root.appendChild(section);
  }
}

// ---- traces ----

/// An attribute value for people: strings as they are, fractions to 3 decimals.
function attrText(v) {
  if (typeof v === "string") return v;
  if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(3);
  return JSON.stringify(v);
}

function spanColor(name) {
  if (name === "request") return "#888888";
  if (name === "shadow") return "#e8871e";
  if (name.startsWith("native")) return COLORS.native;
  if (name === "spin" || name.startsWith("wasm")) return COLORS["spin-embedded"];
  return "#2b8cbe";
}

function traceList() {
  const box = document.getElementById("trace-list");
  if (!state.traces.length) {
    box.innerHTML = `<p class="empty">No traces recorded yet${state.filter ? " for this filter" : ""}.</p>`;
    return;
  }
  const rows = state.traces.map(t => `<tr data-trace-id="${t.trace_id}" class="${t.trace_id === state.selected ? "selected" : ""}">
    <td>${new Date(t.started_unix_ms).toLocaleTimeString()}</td><td class="id"><a href="#trace=${t.trace_id}">${t.trace_id}</a></td>
    <td>${esc(t.route)}</td><td class="${esc(t.backend)}">${esc(t.backend)}</td><td>${fmt(t.duration_ms, 3)}</td>
    <td>${t.status == null ? "–" : t.status}</td><td>${t.spans.length}</td><td>${esc(t.recorded_because.replace("_", " "))}</td></tr>`).join("");
  box.innerHTML = `<table><thead><tr><th>started</th><th>trace id</th><th>route</th><th>backend</th><th>ms</th><th>status</th><th>spans</th><th>recorded because</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function depths(spans) {
  const byId = new Map(spans.map(s => [s.span_id, s]));
  return spans.map(s => {
    let d = 0, p = s.parent_span_id;
    while (p && byId.has(p) && d < 32) { d++; p = byId.get(p).parent_span_id; }
    return d;
  });
}

function waterfall(t) {
  const box = document.getElementById("waterfall");
  document.getElementById("trace-view").hidden = !t;
  if (!t) { box.innerHTML = ""; delete box.dataset.traceId; return; }
  const total = Math.max(t.duration_ms, ...t.spans.map(s => s.start_ms + s.duration_ms), 0.001);
  const depth = depths(t.spans);
  const W = 1000, L = 300, row = 22, H = t.spans.length * row + 30;
  const x = ms => L + (W - L - 10) * ms / total;
  const bars = t.spans.map((s, i) => {
    const y = 8 + i * row, w = Math.max(1.5, x(s.start_ms + s.duration_ms) - x(s.start_ms));
    const attrs = Object.entries(s.attributes).map(([k, v]) => `${k}=${attrText(v)}`).join("\n");
    return `<g class="span" data-name="${esc(s.name)}" data-span-id="${s.span_id}"><title>${esc(s.name)} ${fmt(s.duration_ms, 3)} ms\n${esc(attrs)}</title>
      <text x="${8 + depth[i] * 14}" y="${y + 13}">${esc(s.name)}</text>
      <rect x="${x(s.start_ms).toFixed(1)}" y="${y + 2}" width="${w.toFixed(1)}" height="${row - 6}" rx="2" fill="${spanColor(s.name)}" opacity=".85"/>
      <text x="${Math.min(x(s.start_ms) + w + 4, W - 70).toFixed(1)}" y="${y + 13}"${x(s.start_ms) + w + 4 > W - 70 ? ` text-anchor="end" dx="-8"` : ""}>${fmt(s.duration_ms, 3)} ms</text></g>`;
  }).join("");
  const axis = [0, 0.25, 0.5, 0.75, 1].map(f => `<line x1="${x(total * f)}" x2="${x(total * f)}" y1="4" y2="${H - 18}" stroke="#eee"/><text x="${x(total * f)}" y="${H - 4}" text-anchor="middle">${fmt(total * f, 2)} ms</text>`).join("");
  const table = t.spans.map((s, i) => `<tr><td>${"&nbsp;".repeat(depth[i] * 3)}${esc(s.name)}</td><td>${fmt(s.start_ms, 3)}</td><td>${fmt(s.duration_ms, 3)}</td>
    <td class="attrs">${Object.entries(s.attributes).map(([k, v]) => `${esc(k)}=${esc(attrText(v))}`).join(" · ")}</td></tr>`).join("");
  box.dataset.traceId = t.trace_id;
  box.innerHTML = `<h3>Trace <code>${t.trace_id}</code>: ${esc(t.route)} via ${esc(t.backend)}, ${fmt(t.duration_ms, 3)} ms, status ${t.status == null ? "–" : t.status}
      (recorded because: ${esc(t.recorded_because.replace("_", " "))}${t.dropped_spans ? `; ${t.dropped_spans} spans over the limit not kept` : ""})</h3>
    <svg class="chart waterfall" data-chart="waterfall" data-points="${t.spans.length}" viewBox="0 0 ${W} ${H}">${axis}${bars}</svg>
    <table class="spans"><thead><tr><th>span</th><th>start ms</th><th>ms</th><th>attributes</th></tr></thead><tbody>${table}</tbody></table>`;
}

/// The trace filter the URL's hash asks for: `#trace=<id>` or
/// `#slowest=<route>/<backend>`.
function hashFilter() {
  const h = decodeURIComponent(location.hash.slice(1));
  if (h.startsWith("trace=")) return { trace: h.slice(6) };
  if (h.startsWith("slowest=")) {
    const [route, backend] = h.slice(8).split("/");
    return { route, backend };
  }
  return null;
}

async function pollTraces() {
  const f = hashFilter();
  state.filter = f;
  const q = new URLSearchParams({ limit: "50" });
  if (f && f.route) { q.set("route", f.route); q.set("order", "slowest"); }
  if (f && f.backend) q.set("backend", f.backend);
  const data = await getJson(`/admin/traces?${q}`);
  state.recording = data.recording;
  state.traces = data.traces;
  let chosen = null;
  if (f && f.trace) {
    chosen = state.traces.find(t => t.trace_id === f.trace);
    if (!chosen && /^[0-9a-f]{32}$/.test(f.trace)) {
      const one = await getJson(`/admin/traces?trace_id=${f.trace}`);
      chosen = one.traces[0] || null;
    }
  } else if (f && f.route) {
    chosen = state.traces[0] || null;
  }
  state.selected = chosen ? chosen.trace_id : null;
  document.getElementById("trace-filter").innerHTML = f && f.route
    ? `Showing the slowest recorded traces of <b>${esc(f.route)}</b> via <b>${esc(f.backend || "any backend")}</b> · <a href="#">all traces</a>`
    : f && f.trace && !chosen ? `Trace <code>${esc(f.trace)}</code> is not (or no longer) kept.` : "";
  const r = state.recording;
  if (r) {
    document.getElementById("trace-note").innerHTML = `While this page is open every request is recorded (at most ${r.max_per_second} a second);
      otherwise only requests whose <code>traceparent</code> is sampled and ${r.sample_one_in ? `1 in ${r.sample_one_in}` : "no"} head-sampled requests are.
      Kept: the last ${r.kept.recent} traces and the ${r.kept.slowest_per_route_backend} slowest per route and backend ("slowest" means slowest among recorded traces).`;
  }
  traceList();
  waterfall(chosen);
  // A newly opened trace is scrolled into view (once, not at every poll).
  if (chosen && chosen.trace_id !== state.shown) window.scrollTo(0, 0);
  state.shown = chosen ? chosen.trace_id : null;
}

// ---- polling ----

async function pollStats() {
  const snapshot = await getJson("/admin/stats");
  state.previous = state.stats;
  state.stats = snapshot;
}

async function tick() {
  const jobs = [pollStats(), getJson("/admin/series").then(s => { state.series = s; })];
  if (!state.config || tick.count % 10 === 0) jobs.push(getJson("/admin/config").then(c => { state.config = c; }));
  if (!state.bench) jobs.push(getJson("/admin/bench").then(b => { state.bench = b; }));
  tick.count = (tick.count || 0) + 1;
  const results = await Promise.allSettled(jobs);
  renderRoutes();
  results.filter(r => r.status === "rejected").forEach(r => console.warn("dashboard poll:", r.reason && r.reason.message));
}

async function traceTick() {
  try { await pollTraces(); } catch (e) { console.warn("dashboard traces:", e.message); }
}

tick();
traceTick();
setInterval(tick, 1000);
setInterval(traceTick, 2000);
window.addEventListener("hashchange", traceTick);
