"""Readable rendering of one sample's story and of a run summary (rich renderables)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from robustft.methods.canaries import describe
from robustft.schemas import AgentCall, Fate
from robustft.store.reviews import ReviewStore
from robustft.store.runstore import RunStore
from robustft.viewer.data import response_diff

VERDICT_STYLES = {"consistent": "green", "contradicts": "bold red", "unsure": "magenta"}


def _call_panel(stage: str, c: AgentCall, full: bool) -> Panel:
    head = Text.assemble(
        (f"{c.role}", "bold cyan"), f"  prompt {c.prompt}@{c.prompt_hash}  model {c.model}  ",
        f"{c.latency_s:.2f}s  tokens {c.prompt_tokens}+{c.completion_tokens}",
        f" ({c.usage_source})" if c.usage_source != "server" else "",
        f"  attempts {c.attempts}", "  (cached)" if c.cached else "")
    parts: list[Any] = [head]
    if c.error:
        parts.append(Text(f"ERROR: {c.error}", style="bold red"))
    else:
        parts.append(Text.assemble("answer: ", (str(c.answer), "bold"),
                                   f"  [{c.parse_status}]"))
    if c.answer_top_logprobs:
        tops = ", ".join(f"{t!r}:{lp:.2f}" for t, lp in c.answer_top_logprobs[:8])
        parts.append(Text(f"answer-token top logprobs: {tops}", style="dim"))
    if c.mean_nll is not None:
        parts.append(Text(f"mean NLL of reply: {c.mean_nll:.4f}", style="dim"))
    if c.thinking:
        n = f", {c.reasoning_tokens} tokens" if c.reasoning_tokens is not None else ""
        think = (c.thinking if full or len(c.thinking) <= 600
                 else c.thinking[:600] + " …(truncated; --full)")
        parts.append(Text(f"thinking ({len(c.thinking)} chars{n}):\n{think}", style="dim"))
    if full:
        for m in c.messages:
            parts.append(Text(f"[{m['role']}]\n{m['content']}", style="green"))
    if c.raw is not None:
        raw = c.raw if full or len(c.raw) <= 1200 else c.raw[:1200] + " …(truncated; --full)"
        parts.append(Text("reply:\n" + raw))
    return Panel(Group(*parts), title=f"{stage} · {c.role}", title_align="left")


def diff_text(diff: dict[str, Any], plain: bool = False) -> Text:
    """A response's word diff against the original, whole: deleted words red and struck
    through, inserted ones green, the rest plain; ``plain`` (no colour): ``[-old-]{+new+}``."""
    t = Text()
    for kind, text in diff["ops"]:
        if kind == "equal":
            t.append(text)
            continue
        core = text.strip()  # the whitespace around a change is not marked
        t.append(text[:len(text) - len(text.lstrip())])
        if core and plain:
            t.append(f"[-{core}-]" if kind == "delete" else f"{{+{core}+}}")
        elif core:
            t.append(core, style="red strike" if kind == "delete" else "bold green")
        t.append(text[len(text.rstrip()):] if core else "")
    return t


def diff_summary(diff: dict[str, Any], plain: bool = False, shown: int = 6) -> Text:
    """One line: how many words changed, then each change (removed → inserted)."""
    n = diff["words"]
    t = Text(f"{n} word{'s' if n != 1 else ''} changed", style="bold")
    t.append(": " if diff["changes"] else " (whitespace only)")
    for i, (old, new) in enumerate(diff["changes"][:shown]):
        t.append(" · " if i else "")
        if old:
            t.append(f"[-{old}-]" if plain else old, style="" if plain else "red strike")
        t.append(" → " if old and new else "")
        if new:
            t.append(f"{{+{new}+}}" if plain else new, style="" if plain else "bold green")
    if len(diff["changes"]) > shown:
        t.append(f" · and {len(diff['changes']) - shown} more")
    return t


def _diff_panel(diff: dict[str, Any], title: str, plain: bool) -> Panel:
    return Panel(Group(diff_summary(diff, plain), Text(""), diff_text(diff, plain)),
                 title=title, title_align="left")


def _judgements_table(judgements: list[dict[str, Any]]) -> Table:
    """The judges' verdicts on a free-text response, one per reference."""
    t = Table("reference", "verdict", "P(contradicts)", "how", "reason",
              title="judges' verdicts", title_justify="left")
    for j in judgements:
        p = j.get("p_contradiction")
        verdict = str(j.get("verdict") or "–")
        t.add_row(str(j.get("ref") or "–"), Text(verdict, style=VERDICT_STYLES.get(verdict, "")),
                  "–" if p is None else f"{p:.2f}", str(j.get("how") or ""),
                  Text(str(j.get("reason") or "")))
    return t


def sample_story(store: RunStore, sid: str, full: bool = False, plain: bool = False) -> Group:
    """Everything that happened to one sample, in order, and a person's review of it;
    a changed free-text response as a word diff (``plain``: marked ``[-old-]{+new+}``)."""
    r = store.record(sid)
    if r is None:
        raise KeyError(sid)
    review = None
    if ReviewStore.exists(store.dir):
        reviews = ReviewStore(store.dir)
        review = reviews.get(sid)
        reviews.close()
    s = r.get("sample") or {}
    free = bool(s) and not s.get("options")
    original = r.get("original") if r.get("original") is not None else s.get("label")
    diff = response_diff(original, r.get("final")) if free else None
    parts: list[Any] = []
    head = Table.grid(padding=(0, 2))
    head.add_row("id", str(r["id"]))
    head.add_row("source", str(s.get("source") or r.get("row")))
    if s:
        head.add_row("question", Text(s["question"]))
        for i, o in enumerate(s.get("options") or []):
            head.add_row("", Text(f"{chr(65 + i)}. {o}"))
        head.add_row("given response" if free else "given label",
                     "(in the correction below)" if diff else Text(str(s["label"])))
    head.add_row("fate", Text(str(r.get("fate")), style="bold magenta"))
    head.add_row("reason", Text(str(r.get("reason"))))
    head.add_row("final response" if free else "final label",
                 diff_summary(diff, plain) if diff else Text(str(r.get("final"))))
    if review is not None:
        rv = review.as_dict(r.get("fate"), r.get("final"))
        edit = response_diff(original, review.response) if free and (
            review.action == "edit") else None
        head.add_row("review", Text(
            f"{rv['reviewer'] or 'someone'}: {rv['action']}"
            + (f" → {rv['response']}" if rv["response"] is not None and not edit else "")
            + (" (the edit below)" if edit else "")
            + (f" (note: {rv['note']})" if rv["note"] else "")
            + (" — STALE: the agents decided otherwise since; not applied" if rv["stale"]
               else ""), style="bold yellow" if rv["stale"] else "bold green"))
    parts.append(Panel(head, title="sample", title_align="left"))
    if diff:
        parts.append(_diff_panel(diff, "correction (kept)" if r.get("fate") == Fate.RELABELED_KEPT
                                 else f"proposed correction ({r.get('fate')}: not kept)", plain))
    if review is not None and edit:
        parts.append(_diff_panel(edit, "the reviewer's edit against the original", plain))
    calls = store.calls(sid)
    for stage, c in calls:
        if stage == "detected":
            parts.append(_call_panel(stage, c, full))
    if r.get("verdict"):
        experts = ", ".join(f"{k}={v}" for k, v in (r.get("experts") or {}).items())
        judged = ", ".join(
            f"{k}: {m.get('verdict') or 'unparsed'}"
            + (f" (p_same {m['p_same']:.2f})" if m.get("p_same") is not None else "")
            for k, m in (r.get("match_verdicts") or {}).items())
        checker: list[Any] = [Text(f"verdict: {r['verdict']}\nexpert answers: {experts}"
                                   + (f"\nmatcher: {judged}" if judged else "")
                                   + (f"\n{r['verdict_reason']}" if r.get("verdict_reason")
                                      else ""))]
        if r.get("judgements"):
            checker.append(_judgements_table(r["judgements"]))
        parts.append(Panel(Group(*checker), title="checker", title_align="left"))
    if r.get("neighbours"):
        t = Table("rank", "id", "distance", "label", "question")
        for i, n in enumerate(r["neighbours"], 1):
            t.add_row(str(i), n["id"], f"{n['distance']:.4f}", n["label"], n["question"])
        parts.append(Panel(t, title="retrieved clean neighbours", title_align="left"))
    for stage, c in calls:
        if stage != "detected":
            parts.append(_call_panel(stage, c, full))
    if r.get("stage") == "relabeled":
        dist = r.get("answer_distribution")
        dist_txt = f"\nanswer distribution: {dist}" if dist else ""
        ent = r.get("entropy")
        parts.append(Panel(Text(
            f"context answer: {r.get('context_answer')}\nreviewer answer: "
            f"{r.get('reviewer_answer')}\nreviewer reasoning: {r.get('reviewer_reasoning')}\n"
            f"entropy: {'n/a' if ent is None else f'{ent:.4f}'} ({r.get('entropy_source')})"
            f"{dist_txt}\nselection: {r.get('fate')} — {r.get('reason')}"),
            title="relabel decision", title_align="left"))
    if r.get("judgements") and not r.get("verdict"):  # CLEAR: one per sampled answer
        parts.append(Panel(_judgements_table(r["judgements"]), title="judges",
                           title_align="left"))
    if "confidence" in r:
        parts.append(_clear_panel(r))
    for e in r.get("errors") or []:
        parts.append(Text(f"error: {e}", style="bold red"))
    return Group(*parts)


def _clear_panel(r: dict[str, Any]) -> Panel:
    def num(x: Any) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    lines = [f"sampled answers: {r.get('sampled')}",
             f"similarities s_i: {r.get('similarities')}   exact matches r_i: {r.get('matches')}",
             f"reflection verdicts: {r.get('verdicts')}",
             f"O = {num(r.get('observed'))}   S = {num(r.get('certainty'))}   "
             f"confidence C = {num(r.get('confidence'))}"]
    if r.get("threshold") is not None or "candidate" in r:
        lines += [f"threshold γ = {num(r.get('threshold'))}",
                  f"candidate: {r.get('candidate')}",
                  f"judge votes: {r.get('judge_votes')}   reflection on candidate: "
                  f"{r.get('candidate_verdicts')}",
                  f"judge confidence: {num(r.get('judge_confidence'))}"]
    lines.append(f"fate: {r.get('fate')} — {r.get('reason')}")
    return Panel(Text("\n".join(lines)), title="CLEAR confidence", title_align="left")


def summary_table(summary: dict[str, Any]) -> Group:
    fates = Table("fate", "samples", title="curation summary")
    for f in Fate:
        fates.add_row(f, str(summary["fates"].get(f, 0)))
    for f, n in summary["fates"].items():
        if f not in tuple(Fate):
            fates.add_row(f"{f} (unfinished)", str(n))
    fates.add_row("total", str(summary["samples"]), style="bold")
    cost = summary.get("cost")
    roles = Table("role", "calls", "prompt tokens", "completion tokens", "unparsed",
                  "structured", *(["cost"] if cost else []), title="LLM calls")
    for role, v in summary["by_role"].items():
        roles.add_row(role, str(v["calls"]), str(v["prompt_tokens"]),
                      str(v["completion_tokens"]), str(v.get("unparsed", 0)),
                      str(v.get("structured", 0)),
                      *([f"{cost['by_role'].get(role, 0):.4f}"] if cost else []))
    roles.add_row("total", str(summary["calls"]), str(summary["prompt_tokens"]),
                  str(summary["completion_tokens"]),
                  *(str(sum(v.get(k, 0) for v in summary["by_role"].values()))
                    for k in ("unparsed", "structured")),
                  *([f"{cost['total']:.4f}"] if cost else []), style="bold")
    if cost and cost["unpriced_models"]:
        roles.caption = f"no price for: {', '.join(cost['unpriced_models'])} (counted as 0)"
    extra = Text(f"labels changed: {summary['labels_changed']}   failed calls: "
                 f"{summary['failed_calls']}   served from cache: {summary['cached_calls']}")
    if "this_invocation" in summary:
        inv = summary["this_invocation"]
        extra.append(f"\nthis invocation: {inv['endpoint_calls']} endpoint calls, "
                     f"{inv['endpoint_tokens']} tokens, {inv['cache_hits']} cache hits"
                     + (f", cost {inv['endpoint_cost']:.4f}" if cost else ""))
    parts = [fates, roles, extra]
    if "precision" in summary:
        p = summary["precision"]
        parts.append(decoy_table(p) if p.get("kind") == "decoys" else precision_table(p))
    if summary.get("canaries"):  # planted errors: recall and share fixed, an upper bound
        parts.append(Text("\n".join(describe(summary["canaries"]))))
    if summary.get("reviews"):
        parts.append(review_table(summary["reviews"]))
    if summary.get("audit"):
        parts.append(audit_table(summary["audit"]))
    return Group(*parts)


AUDIT_ESTIMATES = (("precision", "detection precision", "flagged"),
                   ("recall", "recall", None), ("noise_rate", "noise rate", None),
                   ("missed_noise", "missed noise", "unflagged"),
                   ("curated_accuracy", "curated accuracy", None))


def audit_table(a: dict[str, Any]) -> Table | Text:
    """The blind audit's estimates with their 95% intervals, and how far it has come."""
    if "estimates" not in a:
        return Text(f"blind audit: {a.get('not_drawn') or 'no sample'}")
    s = a["strata"]
    t = Table("estimate", "value", "95% interval", "from",
              title=f"blind audit: {a['judged']} of {a['size']} judged (flagged "
                    f"{s['flagged']['drawn']} of {s['flagged']['rows']}, unflagged "
                    f"{s['unflagged']['drawn']} of {s['unflagged']['rows']}; final responses "
                    f"judged {a['finals']['judged']} of {a['finals']['asked']})",
              title_justify="left", caption="\n".join(a["notes"]) or None)
    for key, name, stratum in AUDIT_ESTIMATES:
        e = a["estimates"][key]
        how = ("parametric bootstrap over the strata" if stratum is None else
               f"{s[stratum]['wrong']} wrong of {s[stratum]['wrong'] + s[stratum]['right']} "
               f"judged {stratum} rows (Wilson; {s[stratum]['unsure']} unsure apart)")
        t.add_row(name, "–" if e["value"] is None else f"{e['value']:.3f}",
                  "–" if e["value"] is None else f"[{e['low']:.3f}, {e['high']:.3f}]", how)
    return t


def review_table(r: dict[str, Any]) -> Table:
    """People's reviews against the agents: shares by fate and by uncertainty bucket."""
    agree = f"; agents accepted in {r['agreement']:.0%}" if r["agreement"] is not None else ""
    t = Table("group", "reviews", "accepted", "restored", "edited", "dropped",
              title=f"reviews: {r['reviews']} of {r['queue']} queued samples{agree}",
              caption=f"{r['stale']} stale review(s): the agents decided otherwise since; "
                      "not applied" if r["stale"] else None)
    for kind, groups in (("fate", r["by_fate"]), ("uncertainty", r["by_uncertainty"])):
        for name, g in groups.items():
            t.add_row(f"{kind} {name}", str(g["reviews"]),
                      *(f"{g[a]:.0%}" for a in ("accept", "restore", "edit", "drop")))
    return t


def precision_table(p: dict[str, Any]) -> Table:
    """The probes' fitted curve (relabel accuracy vs entropy) and the cutoff it supports."""
    c, a, b = ([1.0, *p["fit"]] if len(p["fit"]) == 2 else p["fit"]) if p.get("fit") else (
        None, None, None)
    fit = f"; fit p = {c:.3f}·σ({a:.2f} {b:+.2f}·entropy)" if c is not None else ""
    t = Table("entropy up to", "probe accuracy", "90% lower bound", "probes",
              title=f"precision target {p['target']:.2f}: {p['probes']} probes, "
                    f"{p['probe_accuracy'] or 0:.0%} right{fit}",
              caption=p["reason"] + (f"; {p['kept']} relabel(s) kept"
                                     if p.get("cutoff") is not None else ""))
    curve, cutoff = p["curve"], p.get("cutoff")
    # the block the cutoff falls in: the first whose upper entropy reaches it (else the last)
    at = (None if cutoff is None else
          next((i for i, (hi, *_) in enumerate(curve) if hi >= cutoff), len(curve) - 1))
    for i, (hi, acc, low, n) in enumerate(curve):
        t.add_row(f"{hi:.4f}" + (f" ◄ cutoff {cutoff:.4f}" if i == at else ""), f"{acc:.3f}",
                  f"{low:.3f}", str(n))
    return t


def decoy_table(p: dict[str, Any]) -> Table:
    """CLEAR at a precision target: estimated precision of the rows kept at each γ."""
    share = p.get("wrong_share")
    t = Table("keep confidence ≥", "estimated precision", "10% bootstrap quantile", "rows kept",
              title=f"precision target {p['target']:.2f}: {p['decoys']} decoys"
                    + (f", estimated wrong responses {share:.0%}" if share is not None else ""),
              caption=p["reason"])
    for g, est, low, n in p["curve"]:
        mark = " ◄ γ" if p.get("gamma") is not None and abs(g - p["gamma"]) < 1e-12 else ""
        t.add_row(f"{g:.3f}{mark}", f"{est:.3f}", f"{low:.3f}", str(n))
    return t
