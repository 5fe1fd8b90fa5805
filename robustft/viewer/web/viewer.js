// robustft run viewer: summary, paginated sample table, per-sample agent timeline.
// Served by `robustft view` (data from /api/*) or inlined by `robustft report` (window.STATIC_RUN).
"use strict";

const STATIC = window.STATIC_RUN || null;
const app = document.getElementById("app");
const state = { fate: "", changed: false, errors: false, q: "", sort: "row", order: "asc",
  page: 1, size: 50 };

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}
if (STATIC) {  // a report is read-only
  document.getElementById("review-link")?.remove();
  document.getElementById("audit-nav")?.remove();
}
const fmt = (x, d = 4) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
const fateTag = (f) => h("span", { class: `fate fate-${f}` }, f || "pending");
const clip = (t, n = 120) => (t && t.length > n ? t.slice(0, n - 1) + "…" : t);
// The table's fate filter: every fate in order, "relabeled" (kept or dropped) before its two.
const fateFilters = (s) => ["", ...(s.fate_order || []).flatMap((f) =>
  f === "relabeled-kept" ? ["relabeled", f] : [f])];

// ---- data: the HTTP API, or the same queries over the inlined report data -------------
async function api(path, params) {
  if (STATIC) return staticApi(path, params || {});
  const url = path + (params ? "?" + new URLSearchParams(params) : "");
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

function staticApi(path, p) {
  if (path === "/api/summary") return STATIC.summary;
  if (path === "/api/sample") return STATIC.samples.find((s) => s.id === p.id) || null;
  let rows = STATIC.samples.map((s) => {
    const original = s.original ?? (s.sample && s.sample.label);
    return { id: s.id, row: s.row, fate: s.fate, verdict: s.verdict,
      original: original == null ? original : String(original).slice(0, 161),
      final: s.final == null ? s.final : String(s.final).slice(0, 161),
      changed: s.final != null && s.final !== original, entropy: s.entropy,
      confidence: s.confidence, reason: s.reason,
      question: ((s.sample && s.sample.question) || "").slice(0, 160) };
  });
  if (p.fate === "relabeled") rows = rows.filter((r) => (r.fate || "").startsWith("relabeled"));
  else if (p.fate) rows = rows.filter((r) => r.fate === p.fate);
  if (p.changed === "1") rows = rows.filter((r) => r.changed);
  if (p.errors === "1") rows = rows.filter((r) => r.fate === "error");
  if (p.q) rows = rows.filter((r) => (r.id + " " + r.question).includes(p.q));
  const dir = p.order === "desc" ? -1 : 1;
  rows.sort((a, b) => {
    const x = a[p.sort], y = b[p.sort];
    if (x === y) return a.row - b.row;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
  const size = Number(p.size), page = Number(p.page);
  return { total: rows.length, page, size, rows: rows.slice((page - 1) * size, page * size) };
}

// ---- summary ---------------------------------------------------------------------------
function histogram(title, hist) {
  if (!hist || !hist.counts || !hist.counts.length) return null;
  const W = 360, H = 120, n = hist.counts.length, max = Math.max(...hist.counts, 1);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + 18}`);
  svg.setAttribute("class", "hist");
  hist.counts.forEach((c, i) => {
    const r = document.createElementNS(svg.namespaceURI, "rect");
    const bh = (c / max) * H;
    Object.entries({ x: (i * W) / n + 1, y: H - bh, width: W / n - 2, height: bh })
      .forEach(([k, v]) => r.setAttribute(k, v));
    const t = document.createElementNS(svg.namespaceURI, "title");
    t.textContent = `${fmt(hist.edges[i], 3)}–${fmt(hist.edges[i + 1], 3)}: ${c}`;
    r.append(t);
    svg.append(r);
  });
  [[0, "start", hist.edges[0]], [W, "end", hist.edges[n]]].forEach(([x, a, v]) => {
    const t = document.createElementNS(svg.namespaceURI, "text");
    t.setAttribute("x", x); t.setAttribute("y", H + 14); t.setAttribute("text-anchor", a);
    t.textContent = fmt(v, 3);
    svg.append(t);
  });
  return h("div", { class: "panel" }, h("h2", {}, title), svg);
}

// An empty plot for a precision curve (viewBox W × H + 18 for the axis labels) and a function
// drawing a polyline of [x, y] points into it with a class.
const PLOT_W = 360, PLOT_H = 120, SVG_NS = "http://www.w3.org/2000/svg";
function curvePlot() {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${PLOT_W} ${PLOT_H + 18}`);
  svg.setAttribute("class", "hist precision-curve");
  const line = (pts, cls) => {
    const el = document.createElementNS(SVG_NS, "polyline");
    el.setAttribute("points", pts.map(([x, y]) => `${x},${y}`).join(" "));
    el.setAttribute("class", cls);
    svg.append(el);
  };
  return { svg, line };
}

// The panel around a plot: title, the reason, and the curve's rows (first column with
// `digits` decimals, then two values with 3, then a count).
function curvePanel(title, svg, reason, headers, curve, digits) {
  const rows = curve.map(([x, v, low, n]) => h("tr", {}, h("td", { class: "num" }, fmt(x, digits)),
    h("td", { class: "num" }, fmt(v, 3)), h("td", { class: "num" }, fmt(low, 3)),
    h("td", { class: "num" }, n)));
  return h("div", { class: "panel", id: "precision" }, h("h2", {}, title), svg,
    h("p", { class: "muted" }, reason),
    h("table", {}, h("thead", {}, h("tr", {}, ...headers.map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)));
}

// CLEAR at a precision target: estimated precision of the rows kept at each γ (decoys).
function decoyPanel(p) {
  const X = (g) => g * PLOT_W, Y = (a) => PLOT_H - a * PLOT_H;
  const { svg, line } = curvePlot();
  line([[0, Y(p.target)], [PLOT_W, Y(p.target)]], "target");
  line(p.curve.map((c) => [X(c[0]), Y(c[2])]), "bound");
  line(p.curve.map((c) => [X(c[0]), Y(c[1])]), "accuracy");
  if (p.gamma != null) line([[X(p.gamma), 0], [X(p.gamma), PLOT_H]], "cutoff");
  const share = p.wrong_share != null ? `; estimated wrong responses ${fmt(100 * p.wrong_share, 0)}%` : "";
  return curvePanel(`Estimated precision vs γ (${p.decoys} decoys${share}; target ${fmt(p.target, 2)})`,
    svg, p.reason, ["keep confidence ≥", "estimated precision", "10% quantile", "rows kept"],
    p.curve, 3);
}

// Relabel accuracy vs entropy from the probes: the fitted logistic curve, the empirical
// accuracy of the probes (isotonic steps), the target (horizontal) and the cutoff (vertical).
function precisionPanel(p) {
  if (!p) return null;
  if (p.kind === "decoys") return decoyPanel(p);
  const top = Math.max(...p.curve.map((c) => c[0]), p.cutoff || 0, 1e-9);
  const X = (e) => (e / top) * PLOT_W, Y = (a) => PLOT_H - a * PLOT_H;
  const { svg, line } = curvePlot();
  const steps = (k) => {
    let x0 = 0; const pts = [];
    p.curve.forEach((c) => { pts.push([X(x0), Y(c[k])], [X(c[0]), Y(c[k])]); x0 = c[0]; });
    return pts;
  };
  line([[0, Y(p.target)], [PLOT_W, Y(p.target)]], "target");
  line(steps(1), "bound");
  if (p.fit) {
    const [c, a, b] = p.fit.length === 3 ? p.fit : [1, ...p.fit];  // older runs: (a, b)
    const sig = (e) => (b >= 0 ? p.probe_accuracy : c / (1 + Math.exp(-(a + b * e))));
    line([...Array(41).keys()].map((i) => [X((i / 40) * top), Y(sig((i / 40) * top))]),
      "accuracy");
  }
  if (p.cutoff != null) line([[X(p.cutoff), 0], [X(p.cutoff), PLOT_H]], "cutoff");
  [[0, "start", 0], [PLOT_W, "end", top]].forEach(([x, a, v]) => {
    const t = document.createElementNS(SVG_NS, "text");
    t.setAttribute("x", x); t.setAttribute("y", PLOT_H + 14); t.setAttribute("text-anchor", a);
    t.textContent = fmt(v, 3);
    svg.append(t);
  });
  return curvePanel(`Relabel accuracy vs entropy (${p.probes} probes; target ${fmt(p.target, 2)})`,
    svg, p.reason + (p.cutoff != null ? `; ${p.kept} kept` : ""),
    ["entropy up to", "probe accuracy", "90% lower bound", "probes"], p.curve, 4);
}

// Planted errors (canaries): recall and share fixed with 95% Wilson intervals, an upper bound.
function canaryPanel(c) {
  if (!c) return null;
  const fig = (x) => (x.n ? `${fmt(x.share, 3)} (${x.k}/${x.n}; 95% CI ` +
    `${fmt(x.ci95[0], 3)}–${fmt(x.ci95[1], 3)})` : "n/a");
  const kinds = Object.entries(c.by_kind || {}).map(([k, n]) => `${n} ${k}`).join(", ");
  return h("div", { class: "panel", id: "canaries" },
    h("h2", {}, `Planted errors: ${c.planted} canaries${kinds ? ` (${kinds})` : ""}`),
    h("table", {}, h("tbody", {},
      h("tr", {}, h("td", {}, "recall (share flagged)"), h("td", { id: "canary-recall" },
        fig(c.recall))),
      h("tr", {}, h("td", {}, "fixed by the relabel"), h("td", { id: "canary-fixed" },
        fig(c.fixed))))),
    h("p", { class: "muted" }, `These figures are ${c.note}.`));
}

function summaryView(s) {
  document.getElementById("run-path").textContent = `${s.run} · ${s.method}`;
  const card = (k, v, id) => h("div", { class: "card", id }, h("div", { class: "v" }, v),
    h("div", { class: "k" }, k));
  // every fate in order (zeros too), then unfinished stages
  const counts = { ...Object.fromEntries((s.fate_order || []).map((f) => [f, 0])), ...s.fates };
  const fates = Object.entries(counts).map(([f, n]) => card(f, n, `count-${f}`));
  const cost = s.cost;
  const roles = h("table", { id: "roles" }, h("thead", {}, h("tr", {}, h("th", {}, "role"),
    h("th", {}, "calls"), h("th", {}, "prompt tokens"), h("th", {}, "completion tokens"),
    h("th", {}, "unparsed"), h("th", {}, "structured"), cost ? h("th", {}, "cost") : null)),
  h("tbody", {}, Object.entries(s.by_role || {}).map(([r, v]) => h("tr", {}, h("td", {}, r),
    h("td", { class: "num" }, v.calls), h("td", { class: "num" }, v.prompt_tokens),
    h("td", { class: "num" }, v.completion_tokens), h("td", { class: "num" }, v.unparsed || 0),
    h("td", { class: "num" }, v.structured || 0),
    cost ? h("td", { class: "num" }, fmt(cost.by_role[r] || 0, 4)) : null))));
  const prompts = h("table", {}, h("tbody", {}, Object.entries(s.prompts || {}).map(([n, p]) =>
    h("tr", {}, h("td", {}, n), h("td", {}, h("code", {}, p.hash)),
      h("td", { class: "muted", title: p.path }, p.path.split("/").slice(-2).join("/"))))));
  return h("section", { id: "summary" },
    STATIC ? h("p", { class: "banner" }, "Static report: the run summary and the samples " +
      "whose label changed, that the judges were unsure of or the correction confirmed, or " +
      "that a person reviewed. Run `robustft view RUN` to browse every sample.") : null,
    h("div", { class: "cards" }, card("samples", s.samples, "count-samples"), ...fates,
      card("labels changed", s.labels_changed, "count-changed"), card("calls", s.calls),
      card("failed calls", s.failed_calls), card("cached calls", s.cached_calls),
      card("tokens", (s.prompt_tokens || 0) + (s.completion_tokens || 0)),
      cost ? card("cost", fmt(cost.total, 4), "count-cost") : null),
    h("div", { class: "grid2" },
      histogram("Entropy of relabeled samples (lower = surer)", s.entropy_hist),
      histogram(`CLEAR confidence${s.gamma ? ` (γ = ${fmt(s.gamma, 3)})` : ""}`,
        s.confidence_hist),
      precisionPanel(s.precision), canaryPanel(s.canaries), reviewStatsPanel(s.reviews),
      auditPanel(s.audit),
      h("div", { class: "panel" }, h("h2", {}, "Calls by role"), roles),
      h("div", { class: "panel" }, h("h2", {}, "Prompts used (hash)"), prompts)),
    h("details", { class: "panel" }, h("summary", {}, "Config snapshot"), h("pre", {}, s.config)));
}

// ---- sample table ----------------------------------------------------------------------
function tableView(s) {
  const wrap = h("section", { id: "table" });
  const body = h("tbody", {});
  const info = h("span", { id: "page-info", class: "muted" });
  const cols = [["row", "row", true], ["id", "id", true], ["fate", "fate", true],
    ["original", "given", false], ["final", "final", false], ["entropy", "entropy", true],
    ["confidence", "confidence", true], ["question", "question", false]];
  const heads = cols.map(([k, label, sortable]) => h("th", {
    class: sortable ? "sortable" : "", "data-col": k,
    onclick: sortable ? () => go({ order: state.sort === k && state.order === "asc" ?
      "desc" : "asc", sort: k, page: 1 }) : null,
  }, label));
  const markSort = () => heads.forEach((th, i) => {
    const k = cols[i][0];
    th.classList.toggle("sorted", state.sort === k);
    th.textContent = cols[i][1] + (state.sort === k ? (state.order === "asc" ? " ▲" : " ▼") : "");
  });
  markSort();
  // Every change reloads only the table; a newer request makes older replies stale.
  let seq = 0;
  const go = (patch) => { Object.assign(state, patch); markSort(); load().catch(showError); };
  const toolbar = h("div", { class: "toolbar" },
    h("label", {}, "fate ", h("select", { id: "fate-filter",
      onchange: (e) => go({ fate: e.target.value, page: 1 }) },
    fateFilters(s).map((f) => h("option", { value: f, selected: state.fate === f },
      f || "all")))),
    h("label", {}, h("input", { type: "checkbox", id: "changed-filter", checked: state.changed,
      onchange: (e) => go({ changed: e.target.checked, page: 1 }) }), " label changed"),
    h("label", {}, h("input", { type: "checkbox", id: "errors-filter", checked: state.errors,
      onchange: (e) => go({ errors: e.target.checked, page: 1 }) }), " errors only"),
    h("input", { type: "search", id: "search", placeholder: "search id or question…",
      value: state.q, onchange: (e) => go({ q: e.target.value, page: 1 }) }));
  const pager = h("div", { class: "pager" },
    h("button", { id: "prev", onclick: () => state.page > 1 && go({ page: state.page - 1 }) },
      "← prev"), info,
    h("button", { id: "next", onclick: () => go({ page: state.page + 1 }) }, "next →"),
    h("select", { id: "page-size", onchange: (e) => go({ size: Number(e.target.value),
      page: 1 }) }, [25, 50, 100, 200].map((n) => h("option", { value: n,
      selected: state.size === n }, `${n} / page`))));
  wrap.append(h("h2", {}, "Samples"), toolbar,
    h("table", { id: "samples" }, h("thead", {}, h("tr", {}, heads)), body), pager);

  async function load() {
    const params = { sort: state.sort, order: state.order, page: state.page, size: state.size };
    if (state.fate) params.fate = state.fate;
    if (state.changed) params.changed = "1";
    if (state.errors) params.errors = "1";
    if (state.q) params.q = state.q;
    const mine = ++seq;
    wrap.dataset.busy = "1";
    const t0 = performance.now();
    const data = await api("/api/samples", params);
    if (mine !== seq) return;
    const pages = Math.max(1, Math.ceil(data.total / data.size));
    if (state.page > pages) { state.page = pages; return load(); }
    body.replaceChildren(...data.rows.map((r) => h("tr", {
      "data-id": r.id, onclick: () => { location.hash = "#/sample/" + encodeURIComponent(r.id); },
    }, h("td", { class: "num" }, r.row), h("td", {}, r.id), h("td", {}, fateTag(r.fate)),
    h("td", {}, clip(r.original, 160) ?? "–"),
    h("td", { class: (r.changed ?? (r.final && r.final !== r.original)) ? "changed" : "" },
      clip(r.final, 160) ?? "–"),
    h("td", { class: "num" }, fmt(r.entropy)), h("td", { class: "num" }, fmt(r.confidence, 3)),
    h("td", {}, r.question))));
    info.textContent = `page ${data.page} of ${pages} · ${data.total} matching · ` +
      `${Math.round(performance.now() - t0)} ms`;
    wrap.dataset.busy = "0";
  }
  load().catch(showError);
  return wrap;
}

// ---- one sample ------------------------------------------------------------------------
function kv(pairs) {
  return h("div", { class: "kv" }, pairs.filter(([, v]) => v !== undefined && v !== null &&
    v !== "").flatMap(([k, v]) => [h("div", { class: "k" }, k), h("div", {}, v)]));
}

function logprobBars(top) {
  if (!top || !top.length) return null;
  return h("table", { class: "logprobs" }, h("tbody", {}, top.slice(0, 8).map(([tok, lp]) =>
    h("tr", {}, h("td", {}, h("code", {}, JSON.stringify(tok))),
      h("td", { class: "num" }, fmt(Math.exp(lp), 3)),
      h("td", {}, h("span", { class: "bar", style: `width:${Math.round(Math.exp(lp) * 160)}px` }))))));
}

function callCard(c, i) {
  return h("div", { class: "call" + (c.error ? " error" : ""), "data-role": c.role,
    "data-stage": c.stage },
  h("h3", {}, `${i + 1}. ${c.stage} · ${c.role}`),
  h("div", { class: "meta" }, `prompt ${c.prompt}@${c.prompt_hash} · model ${c.model} · ` +
    `${fmt(c.latency_s, 2)} s · tokens ${c.prompt_tokens}+${c.completion_tokens}` +
    `${c.usage_source !== "server" ? " (estimated)" : ""} · attempts ${c.attempts}` +
    `${c.cached ? " · cached" : ""}`),
  c.error ? h("p", { class: "errtext" }, "error: " + c.error) :
    h("p", {}, "answer: ", h("span", { class: "answer" }, c.answer ?? "unparsed"),
      h("span", { class: "muted" }, ` [${c.parse_status}]`),
      c.mean_nll !== null ? h("span", { class: "muted" }, ` · mean NLL ${fmt(c.mean_nll)}`) :
        null),
  c.answer_top_logprobs ? h("div", {}, h("div", { class: "muted" },
    "answer-token probabilities"), logprobBars(c.answer_top_logprobs)) : null,
  c.reasoning ? h("details", {}, h("summary", {}, "reasoning"), h("pre", {}, c.reasoning)) :
    null,
  c.thinking ? h("details", { class: "thinking" }, h("summary", {}, "thinking" +
    (c.reasoning_tokens != null ? ` (${c.reasoning_tokens} tokens)` : "")),
  h("pre", {}, c.thinking)) : null,
  h("details", {}, h("summary", {}, "rendered prompt"), (c.messages || []).map((m) =>
    h("div", {}, h("div", { class: "muted" }, `[${m.role}]`), h("pre", {}, m.content)))),
  c.raw !== null ? h("details", { open: !!c.error || c.parse_status !== "ok" },
    h("summary", {}, "raw reply"), h("pre", { class: "raw" }, c.raw)) : null);
}

// ---- a changed free-text response as a word diff against the original ------------------
// One line first: how many words changed and each change (removed → inserted); then the
// whole text with deletions struck through and insertions marked. Text nodes only.
function diffSummary(diff) {
  const n = diff.words, shown = diff.changes.slice(0, 6);
  const more = diff.changes.length - shown.length;
  return h("p", { class: "diff-summary" }, h("strong", {}, `${n} word${n === 1 ? "" : "s"} changed`),
    shown.length ? ": " : " (whitespace only)", shown.flatMap(([a, b], i) => [i ? " · " : "",
      a ? h("del", {}, clip(a, 60)) : null, a && b ? " → " : "", b ? h("ins", {}, clip(b, 60)) :
        null]), more > 0 ? ` · and ${more} more` : "");
}

function diffPanel(diff, title, id) {
  if (!diff) return null;
  return h("div", { class: "panel diff", id }, h("h2", {}, title), diffSummary(diff),
    h("div", { class: "difftext" }, diff.ops.flatMap(([kind, text]) => {
      if (kind === "equal") return [text];
      const [, lead, core, trail] = text.match(/^(\s*)([\s\S]*?)(\s*)$/);  // space stays out
      return [lead, core ? h(kind === "delete" ? "del" : "ins", {}, core) : null, trail];
    })));
}

// The judges' verdict on the response against each reference (expert or sampled answer).
function judgementsPanel(list) {
  if (!list || !list.length) return null;
  return h("div", { class: "panel", id: "judgements-panel" }, h("h2", {}, "Judges' verdicts"),
    h("table", { id: "judgements" }, h("thead", {}, h("tr", {}, ["reference", "verdict",
      "P(contradicts)", "how", "reason"].map((t) => h("th", {}, t)))),
    h("tbody", {}, list.map((j) => h("tr", { "data-verdict": j.verdict },
      h("td", {}, j.ref ?? "–"),
      h("td", {}, h("span", { class: `verdict verdict-${j.verdict}` }, j.verdict ?? "–")),
      h("td", { class: "num" }, fmt(j.p_contradiction, 2)), h("td", {}, j.how ?? ""),
      h("td", {}, j.reason ?? ""))))));
}

// A response in the sample's facts: a long one (free text) as a wrapped block.
const longText = (t) => (typeof t === "string" && t.length > 120 ? h("pre", {}, t) : t);

function sampleView(d, withReview = true) {
  const s = d.sample || {};
  const letters = (s.options || []).map((o, i) => `${String.fromCharCode(65 + i)}. ${o}`);
  const longExperts = Object.values(d.experts || {}).some((a) => (a || "").length > 120);
  const experts = longExperts ? h("div", {}, Object.entries(d.experts).map(([r, a]) =>
    h("details", {}, h("summary", {}, r), h("pre", {}, a ?? "unparsed")))) :
    Object.entries(d.experts || {}).map(([r, a]) => `${r}=${a ?? "unparsed"}`).join(", ");
  const judged = Object.entries(d.match_verdicts || {}).map(([r, m]) =>
    `${r}: ${m.verdict ?? "unparsed"}` + (m.p_same != null ? ` (p_same ${m.p_same.toFixed(2)})` : ""));
  const nb = d.neighbours || [];
  return h("section", { id: "sample", "data-id": d.id },
    withReview ? h("p", {}, h("a", { href: "#/", id: "back" }, "← all samples")) : null,
    withReview ? reviewPanel(d, render) : null,
    diffPanel(d.diff, d.fate === "relabeled-kept" ? "Correction (kept)" :
      `Proposed correction (${d.fate || "pending"}: not kept)`, "diff"),
    diffPanel(d.review_diff, "The reviewer's edit against the original", "review-diff"),
    h("div", { class: "panel" }, h("h2", {}, `Sample ${d.id}`), kv([
      ["source", s.source || d.row], ["question", longText(s.question)],
      ["options", letters.length ? h("pre", {}, letters.join("\n")) : null],
      [letters.length ? "given label" : "given response", d.diff ? null : longText(s.label)],
      ["fate", fateTag(d.fate)], ["reason", d.reason],
      [letters.length ? "final label" : "final response", h("span", { id: "final-label",
        class: d.final !== s.label ? "changed" : "" }, d.diff ? `the original with the ` +
        `${d.diff.words} changed word(s) above` : longText(d.final) ?? "–")],
      ["experts", experts], ["checker", d.verdict ? `${d.verdict}: ` +
        `${d.verdict_reason || ""}` : null],
      ["matcher", judged.length ? judged.join(", ") : null],
      ["context answer", longText(d.context_answer)],
      ["reviewer answer", d.reviewer_answer !== undefined ? h("span", { id: "reviewer-answer" },
        longText(d.reviewer_answer) ?? "unparsed") : null],
      ["reviewer reasoning", d.reviewer_reasoning ? h("pre", {}, d.reviewer_reasoning) : null],
      ["entropy", d.entropy !== null && d.entropy !== undefined ?
        `${fmt(d.entropy)} (${d.entropy_source})` : null],
      ["answer distribution", d.answer_distribution ? Object.entries(d.answer_distribution)
        .map(([k, v]) => `${k}: ${fmt(v, 3)}`).join("  ") : null],
      ["confidence", d.confidence !== undefined && d.confidence !== null ?
        `C=${fmt(d.confidence, 3)} (O=${fmt(d.observed, 3)}, S=${fmt(d.certainty, 3)})` : null],
      ["candidate", longText(d.candidate)], ["judge confidence", d.judge_confidence],
      ["errors", (d.errors || []).length ? h("span", { class: "errtext" },
        d.errors.join("; ")) : null]])),
    judgementsPanel(d.judgements),
    nb.length ? h("div", { class: "panel" }, h("h2", {}, `Retrieved clean neighbours (${nb.length})`),
      h("table", { id: "neighbours" }, h("thead", {}, h("tr", {}, h("th", {}, "id"),
        h("th", {}, "distance"), h("th", {}, "question"), h("th", {}, "label"))),
      h("tbody", {}, nb.map((n) => h("tr", {}, h("td", {}, n.id),
        h("td", { class: "num" }, fmt(n.distance)), h("td", {}, n.question,
          (n.options || []).length ? h("div", { class: "muted" }, n.options.map((o, i) =>
            `${String.fromCharCode(65 + i)}. ${o}`).join("  ")) : null),
        h("td", {}, n.label)))))) : null,
    h("h2", {}, `Agent timeline (${(d.calls || []).length} calls)`),
    h("div", { class: "timeline" }, (d.calls || []).map(callCard)));
}

// ---- routing ---------------------------------------------------------------------------
function showError(e) {
  app.replaceChildren(h("p", { class: "errtext" }, String(e)));
}

async function render() {
  const m = location.hash.match(/^#\/sample\/(.+)$/);
  const queued = location.hash.match(/^#\/review\/(\d+)$/);
  const audited = location.hash.match(/^#\/audit\/(\d+)$/);
  try {
    if (queued && !STATIC) {
      await reviewView(Number(queued[1]));
      window.scrollTo(0, 0);
    } else if (audited && !STATIC) {
      await auditView(Number(audited[1]));
      window.scrollTo(0, 0);
    } else if (m) {
      const d = await api("/api/sample", { id: decodeURIComponent(m[1]) });
      app.replaceChildren(d ? sampleView(d) : h("p", { class: "errtext" }, "no such sample"));
      window.scrollTo(0, 0);
    } else {
      const s = await api("/api/summary");
      app.replaceChildren(summaryView(s), tableView(s));
    }
  } catch (e) { showError(e); }
}
window.addEventListener("hashchange", render);
render();
