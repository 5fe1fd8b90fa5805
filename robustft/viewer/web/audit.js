// robustft blind audit: a random sample of rows (flagged and unflagged, mixed) judged by a
// person who sees the prompt and the original response only; the agents' story is fetched
// with the row only once the verdict is saved. Keys: 1 right · 2 wrong · 3 unsure (the
// question shown: the original response, then, for a kept row the agents changed, the final
// one) · j/→ next · k/← previous · n next not judged. Loaded before viewer.js (uses h, api,
// fmt, clip, fateTag, diffPanel from there at call time); sample text only as text nodes.
"use strict";

const AUDIT_KEYS = "1 right · 2 wrong · 3 unsure · j/→ next · k/← previous · n next not judged";
const ESTIMATES = [["precision", "detection precision"], ["recall", "recall"],
  ["noise_rate", "noise rate"], ["missed_noise", "missed noise"],
  ["curated_accuracy", "curated accuracy"]];
const VERDICT_LABELS = ["right", "wrong", "unsure"];
// A multiple-choice answer with its option's text ("B. 9"); any other response as it is.
const answerText = (r, options) => {
  const i = typeof r === "string" && r.length === 1 ? r.charCodeAt(0) - 65 : -1;
  return i >= 0 && i < (options || []).length ? `${r}. ${options[i]}` : r;
};

// "0.91 [0.80, 0.96]", or "–" while there is nothing to estimate from.
const withInterval = (e) => (!e || e.value === null ? "–" :
  `${fmt(e.value, 2)} [${fmt(e.low, 2)}, ${fmt(e.high, 2)}]`);

function estimatesLine(a) {
  if (!a || !a.estimates) return a && a.not_drawn ? a.not_drawn : "no audit sample yet";
  return `${a.judged} of ${a.size} judged; ` + ESTIMATES.map(([k, name]) =>
    `${name} ${withInterval(a.estimates[k])}`).join(" · ");
}

async function postVerdict(body) {
  const r = await fetch("/api/audit", { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Robustft-Token": TOKEN } });
  return { status: r.status, data: await r.json() };
}

function judgedLine(j, what, id) {
  const when = new Date(j.at * 1000).toISOString().slice(0, 16).replace("T", " ");
  return h("p", { id, class: "reviewed", "data-verdict": j.verdict },
    `${what}: ${j.verdict} (${j.reviewer || "someone"}, ${when} UTC)`);
}

function verdictButtons(prefix, onPick) {
  return h("div", { class: "toolbar", id: `${prefix}-buttons` }, VERDICT_LABELS.map((v, i) =>
    h("button", { id: `${prefix}-${v}`, onclick: () => onPick(v) }, h("kbd", {}, String(i + 1)),
      ` ${v}`)));
}

// The agents' story of a judged row: their verdict, fate, final response (or diff).
function auditStory(st, options) {
  const changed = st.diff ? `${st.diff.words} word(s) changed (below)` :
    st.changed ? clip(answerText(st.final, options)) : "unchanged";
  return h("div", { class: "panel", id: "audit-story" }, h("h2", {}, "What the agents decided"),
    h("div", { class: "kv" },
      h("div", { class: "k" }, "checker"), h("div", { id: "audit-checker" },
        `${st.checker || "–"}${st.checker_reason ? `: ${st.checker_reason}` : ""}`),
      h("div", { class: "k" }, "fate"), h("div", {}, fateTag(st.fate), ` ${st.reason || ""}`),
      h("div", { class: "k" }, "final response"), h("div", { id: "audit-final" },
        st.final === null ? "– (not kept)" : changed),
      h("div", { class: "k" }, "sample"), h("div", {}, h("a", {
        href: "#/sample/" + encodeURIComponent(st.id) }, `${st.id}: whole story and review`),
      h("span", { class: "muted" }, " (a verdict here changes no output; a review does)"))),
    diffPanel(st.diff, "The agents' correction", "audit-diff"));
}

async function auditView(index) {
  app.onkey = null;  // no key acts on the previous page's sample while this one loads
  const d = await api("/api/audit", { index });
  const go = (i) => { location.hash = `#/audit/${Math.max(0, i)}`; };
  const msg = h("div", { id: "audit-msg" });
  const progress = h("p", { id: "audit-progress", class: "muted" }, d.item ? `row ${d.index + 1} ` +
    `of ${d.total} (random order, flagged and unflagged rows mixed)` : "no row here");
  const head = h("p", { id: "audit-estimates" }, estimatesLine(d.estimates));
  const nav = h("p", {}, h("a", { href: "#/" }, "← summary"), " ",
    h("button", { id: "audit-prev", onclick: () => go(index - 1) }, "← previous"), " ",
    h("button", { id: "audit-next", onclick: () => go(index + 1) }, "next →"), " ",
    d.next_unjudged !== null ? h("button", { id: "audit-todo",
      onclick: () => go(d.next_unjudged) }, "next not judged") : null);
  const section = h("section", { id: "audit", "data-position": d.index,
    "data-state": !d.item ? "none" : d.story ? "judged" : "blind" },
  h("h2", {}, "Blind audit"), progress, head, nav);
  if (!d.item) {
    if (d.not_drawn) section.append(h("p", { class: "errtext" }, d.not_drawn));
    app.replaceChildren(section);
    return;
  }
  const it = d.item;
  const letters = it.options.map((o, i) => `${String.fromCharCode(65 + i)}. ${o}`);
  const long = (t) => (typeof t === "string" && t.length > 120 ? h("pre", {}, t) : t);
  section.append(h("div", { class: "panel", id: "audit-item" },
    h("h2", {}, "Is this response right?"),
    h("div", { class: "kv" }, h("div", { class: "k" }, "prompt"), h("div", { id: "audit-question" },
      long(it.question)),
    letters.length ? h("div", { class: "k" }, "options") : null,
    letters.length ? h("pre", {}, letters.join("\n")) : null,
    h("div", { class: "k" }, "response"), h("div", { id: "audit-response" },
      h("strong", {}, long(answerText(it.response, it.options)) ?? "–")))));
  let pick = null;
  const save = async (body) => {
    msg.className = "muted"; msg.textContent = "saving…";
    const { status, data } = await postVerdict({ index: d.index, ...body });
    if (status === 200) { render(); return; }
    msg.className = "errtext";
    msg.textContent = `not saved (HTTP ${status}): ${data.error}`;
  };
  if (!d.story) {  // blind: only the human's verdict can reveal the rest
    pick = (v) => save({ verdict: v, question: "original" });
    section.append(verdictButtons("audit", pick));
  } else {
    section.append(judgedLine(it.judged, "your verdict on the original response",
      "audit-verdict"), auditStory(d.story, it.options));
    const st = d.story;
    if (st.ask_final && st.final_judged) {
      section.append(judgedLine(st.final_judged, "verdict on the final response",
        "audit-final-verdict"));
    } else if (st.ask_final) {
      pick = (v) => save({ verdict: v, question: "final" });
      section.append(h("div", { class: "panel", id: "audit-second" },
        h("h2", {}, "Is the agents' final response right?"),
        h("p", {}, h("strong", {}, long(answerText(st.final, it.options)))), st.final_stale ? h("p", { class: "stale" },
          "an earlier answer was about another final response (the run was curated again)") :
          null, verdictButtons("final", pick)));
    }
  }
  section.append(msg, h("p", { class: "muted" }, AUDIT_KEYS));
  app.replaceChildren(section);
  app.onkey = (e) => {
    const v = { 1: "right", 2: "wrong", 3: "unsure" }[e.key];
    if (v && pick) { e.preventDefault(); pick(v).catch((err) => { msg.textContent = String(err); }); }
    else if (e.key === "j" || e.key === "ArrowRight") go(index + 1);
    else if (e.key === "k" || e.key === "ArrowLeft") go(index - 1);
    else if (e.key === "n" && d.next_unjudged !== null) go(d.next_unjudged);
  };
}

document.addEventListener("keydown", (e) => {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
  if (location.hash.startsWith("#/audit/") && app.onkey && !e.altKey && !e.ctrlKey &&
    !e.metaKey && !typing) app.onkey(e);
});

// The audit's estimates for the summary page (and the static report).
function auditPanel(a) {
  if (!a) return null;
  if (!a.estimates) {
    return h("div", { class: "panel", id: "audit-panel" }, h("h2", {}, "Blind audit"),
      h("p", {}, a.not_drawn || "no audit sample"));
  }
  const s = a.strata;
  const from = { precision: `${s.flagged.wrong} wrong of ${s.flagged.wrong + s.flagged.right} ` +
      "judged flagged rows (Wilson)",
  missed_noise: `${s.unflagged.wrong} wrong of ${s.unflagged.wrong + s.unflagged.right} ` +
      "judged unflagged rows (Wilson)" };
  const rows = ESTIMATES.map(([k, name]) => {
    const e = a.estimates[k] || {};
    return h("tr", { "data-estimate": k }, h("td", {}, name), h("td", { class: "num" },
      fmt(e.value, 3)), h("td", { class: "num" }, e.value === null ? "–" :
      `[${fmt(e.low, 3)}, ${fmt(e.high, 3)}]`),
    h("td", { class: "muted" }, from[k] || "parametric bootstrap over the strata"));
  });
  return h("div", { class: "panel", id: "audit-panel" }, h("h2", {}, "Blind audit"),
    h("p", { id: "audit-summary-line" }, `${a.judged} of ${a.size} judged ` +
      `(flagged ${s.flagged.drawn} drawn of ${s.flagged.rows}, unflagged ${s.unflagged.drawn} ` +
      `of ${s.unflagged.rows}; unsure: ${s.flagged.unsure + s.unflagged.unsure}; final ` +
      `responses judged ${a.finals.judged} of ${a.finals.asked})`,
    STATIC || !TOKEN ? null : [" · ", h("a", { href: "#/audit/0", id: "audit-link" },
      "open the audit")]),
    h("table", { id: "audit-estimates-table" }, h("thead", {}, h("tr", {},
      ["estimate", "value", "95% interval", "from"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows)),
    (a.notes || []).map((n) => h("p", { class: "muted" }, n)));
}
