// robustft review: the queue of samples the agents flagged or failed on (unsure ones first,
// then most uncertain first), one at a time with the agents' story, keyboard first. Loaded
// before viewer.js (it uses h, api, fmt, clip, fateTag, sampleView from there at call time).
// Every text from a sample goes through h() as a text node: never parsed as HTML.
"use strict";

const TOKEN = (document.getElementById("token") || {}).content || "";
const REVIEW_KEYS = "j/→ next · k/← previous · a accept · r restore original · d drop · " +
  "e edit · n note";
const rq = { fate: "", q: "", unreviewed: false };
const ACTION_NAMES = { accept: "accepted the agents' decision", restore: "restored the original",
  drop: "dropped the sample", edit: "edited the response" };

async function postReview(body) {
  const r = await fetch("/api/review", { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Robustft-Token": TOKEN } });
  return { status: r.status, data: await r.json() };
}

// What a person decided, or "not reviewed"; stale reviews are shown as such.
function reviewLine(rv) {
  if (!rv) return h("span", { class: "muted", id: "review-state" }, "not reviewed");
  const when = new Date(rv.at * 1000).toISOString().slice(0, 16).replace("T", " ");
  return h("span", { id: "review-state", class: rv.stale ? "stale" : "reviewed",
    "data-action": rv.action },
  `${rv.reviewer || "someone"} ${ACTION_NAMES[rv.action] || rv.action}`,
  rv.response !== null && rv.response !== undefined ? ` → ${clip(rv.response)}` : "",
  ` (${when} UTC, v${rv.version})`, rv.note ? ` · note: ${rv.note}` : "",
  rv.stale ? " · STALE: the agents decided otherwise since; not applied" : "");
}

// The review panel of one sample: read-only in the static report or for clean rows.
function reviewPanel(d, onSaved) {
  const s = d.sample || {};
  const letters = (s.options || []).map((_, i) => String.fromCharCode(65 + i));
  const msg = h("div", { id: "review-msg" });
  // a long free-text response is shown whole below (as a diff when it changed), not here
  const final = d.diff ? `corrected, ${d.diff.words} word(s) changed (below)` :
    letters.length || d.final !== s.label ? clip(d.final) ?? "–" : "unchanged";
  const head = h("div", { class: "kv" },
    h("div", { class: "k" }, "agents"), h("div", {}, fateTag(d.fate), ` final: ${final}`,
      ` · given: ${clip(s.label) ?? "–"}`),
    h("div", { class: "k" }, "review"), h("div", {}, reviewLine(d.review)));
  if (STATIC || !TOKEN || !d.reviewable) {
    return d.review ? h("div", { class: "panel", id: "review" }, h("h2", {}, "Review"), head) :
      null;
  }
  const editor = letters.length ?
    h("select", { id: "review-edit" }, letters.map((l, i) => h("option", { value: l,
      selected: (d.final || s.label) === l }, `${l}. ${s.options[i]}`))) :
    h("textarea", { id: "review-edit", rows: 3, onfocus: (e) => {  // grows when editing
      e.target.rows = Math.min(16, Math.max(3, Math.ceil(e.target.value.length / 100)));
    } });
  if (!letters.length) editor.value = d.final ?? s.label ?? "";
  const note = h("input", { id: "review-note", type: "text", placeholder: "optional note",
    maxlength: 2000, value: (d.review && d.review.note) || "" });
  const save = async (action) => {
    const body = { id: d.id, action, note: note.value,
      base_version: d.review ? d.review.version : 0 };
    if (action === "edit") body.response = editor.value;
    msg.className = "muted"; msg.textContent = "saving…";
    const { status, data } = await postReview(body);
    if (status === 200) { msg.textContent = "saved"; onSaved(data.review); return; }
    msg.className = "errtext";
    msg.textContent = status === 409 ? data.error : `not saved (HTTP ${status}): ${data.error}`;
  };
  const button = (action, key, label) => h("button", { id: `review-${action}`,
    "data-key": key, onclick: () => save(action).catch((e) => { msg.textContent = String(e); }) },
  h("kbd", {}, key), " ", label);
  const panel = h("div", { class: "panel", id: "review" }, h("h2", {}, "Review"), head,
    h("div", { class: "toolbar" }, button("accept", "a", "accept"),
      button("restore", "r", "restore original"), button("drop", "d", "drop"),
      h("span", {}, "edit: ", editor, " ", button("edit", "e", "save edit")), note),
    msg, h("div", { class: "muted" }, REVIEW_KEYS));
  panel.save = save;
  panel.editor = editor;
  panel.note = note;
  return panel;
}

function queueParams(index) {
  const p = { index };
  if (rq.fate) p.fate = rq.fate;
  if (rq.q) p.q = rq.q;
  if (rq.unreviewed) p.unreviewed = "1";
  return p;
}

async function reviewView(index) {
  const entry = await api("/api/queue", queueParams(index));
  const go = (i) => { location.hash = `#/review/${Math.max(0, i)}`; };
  const refilter = (patch) => { Object.assign(rq, patch); if (index === 0) render(); else go(0); };
  const toolbar = h("div", { class: "toolbar" },
    h("label", {}, "fate ", h("select", { id: "queue-fate",
      onchange: (e) => refilter({ fate: e.target.value }) },
    ["", ...entry.fates].map((f) => h("option", { value: f, selected: rq.fate === f },
      f || "all")))),
    h("label", {}, h("input", { type: "checkbox", id: "queue-unreviewed",
      checked: rq.unreviewed, onchange: (e) => refilter({ unreviewed: e.target.checked }) }),
    " not reviewed only"),
    h("input", { type: "search", id: "queue-search", placeholder: "search id or question…",
      value: rq.q, onchange: (e) => refilter({ q: e.target.value }) }));
  const progress = h("p", { id: "review-progress" },
    `${entry.reviewed} of ${entry.total} reviewed`,
    h("span", { class: "muted" }, entry.id ? ` · sample ${entry.index + 1} of ` +
      `${rq.unreviewed ? entry.total - entry.reviewed : entry.total} in the queue (${entry.order})` :
      " · nothing left here"));
  const nav = h("p", {}, h("a", { href: "#/" }, "← summary"), " ",
    h("button", { id: "queue-prev", onclick: () => go(index - 1) }, "← previous"), " ",
    h("button", { id: "queue-next", onclick: () => go(index + 1) }, "next →"));
  if (!entry.id) {
    app.replaceChildren(h("section", { id: "queue" }, h("h2", {}, "Review queue"), toolbar,
      progress, nav));
    return;
  }
  const d = await api("/api/sample", { id: entry.id });
  const panel = reviewPanel(d, () => go(rq.unreviewed ? index : index + 1));
  const story = sampleView(d, false);
  app.replaceChildren(h("section", { id: "queue", "data-id": d.id },
    h("h2", {}, "Review queue"), toolbar, progress, nav, panel, story));
  app.onkey = (e) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if (e.key === "Escape") { document.activeElement.blur(); return; }
    if (typing) { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) panel.save("edit"); return; }
    const act = { a: "accept", r: "restore", d: "drop" }[e.key];
    if (act && panel.save) { e.preventDefault(); panel.save(act); }
    else if (e.key === "e" && panel.editor) { e.preventDefault(); panel.editor.focus(); }
    else if (e.key === "n" && panel.note) { e.preventDefault(); panel.note.focus(); }
    else if (e.key === "j" || e.key === "ArrowRight") go(index + 1);
    else if (e.key === "k" || e.key === "ArrowLeft") go(index - 1);
  };
}

document.addEventListener("keydown", (e) => {
  if (location.hash.startsWith("#/review/") && app.onkey && !e.altKey) app.onkey(e);
});

// Agreement between reviewers and agents, for the summary page.
function reviewStatsPanel(r) {
  if (!r) return null;
  const share = (g) => ["accept", "restore", "edit", "drop"].map((a) =>
    h("td", { class: "num" }, `${Math.round((g[a] || 0) * 100)}%`));
  const table = (title, groups, id) => h("table", { id }, h("thead", {}, h("tr", {},
    h("th", {}, title), h("th", {}, "reviews"), ["accepted", "restored", "edited", "dropped"]
      .map((x) => h("th", {}, x)))),
  h("tbody", {}, Object.entries(groups).map(([k, g]) => h("tr", {}, h("td", {}, k),
    h("td", { class: "num" }, g.reviews), share(g)))));
  return h("div", { class: "panel", id: "review-stats" }, h("h2", {}, "Reviews"),
    h("p", {}, `${r.reviews} of ${r.queue} queued samples reviewed` +
      (r.agreement !== null ? ` · agents accepted in ${Math.round(r.agreement * 100)}%` : "") +
      (r.stale ? ` · ${r.stale} stale (not applied)` : "")),
    table("agents' fate", r.by_fate, "review-by-fate"),
    table("uncertainty", r.by_uncertainty, "review-by-uncertainty"));
}
