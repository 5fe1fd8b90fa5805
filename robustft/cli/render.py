"""Readable rendering of one sample's story and of a run summary (rich renderables)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from robustft.methods.canaries import describe
from robustft.pipeline.records import Record, Row, record_of
from robustft.schemas import AgentCall, Fate, Stage
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


STAGE_TITLES = {Stage.DETECTED: "detection: experts and checker",
                Stage.RELABELED: "relabel decision", Stage.SCORED: "CLEAR confidence",
                Stage.CORRECTED: "CLEAR correction"}
SHORT = 600  # characters of a long text shown without --full


def _scalar(v: Any, full: bool) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if v is None:
        return "–"
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return text if full or len(text) <= SHORT else text[:SHORT] + " …(truncated; --full)"


def _rows(value: Any) -> list[dict[str, Any]] | None:
    """A list of models or dicts as table rows (None: not one)."""
    if not value or not isinstance(value, list):
        return None
    rows = [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
    return rows if all(isinstance(r, dict) for r in rows) else None


def _table(title: str, rows: list[dict[str, Any]], full: bool) -> Table:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    t = Table(*keys, title=title, title_justify="left")
    for r in rows:
        cells = [_scalar(r.get(k), full) for k in keys]
        t.add_row(*(Text(c, style=VERDICT_STYLES.get(c, "")) for c in cells))
    return t


def _line(title: str, value: Any, full: bool) -> str:
    if isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values()):
        return f"{title}: " + ", ".join(f"{k}={_scalar(v, full)}" for k, v in value.items())
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return f"{title}: [" + ", ".join(_scalar(v, full) for v in value) + "]"
    return f"{title}: {_scalar(value, full)}"


def fields_panel(rec: Record, names: list[str], title: str, full: bool) -> Panel | None:
    """The record's fields ``names`` (those it holds): a line each (``title: value``), a
    table for a list of records (neighbours, judges' verdicts)."""
    info = type(rec).model_fields
    lines, tables = [], []
    for name in names:
        if name not in rec.model_fields_set:
            continue
        value, label = getattr(rec, name), (info[name].title if name in info else None) or (
            name.replace("_", " "))
        if (rows := _rows(value)) is not None:
            tables.append(_table(label, rows, full))
        else:
            lines.append(_line(label, value, full))
    if not lines and not tables:
        return None
    return Panel(Group(*([Text("\n".join(lines))] if lines else []), *tables), title=title,
                 title_align="left")


def sample_story(store: RunStore, sid: str, full: bool = False, plain: bool = False) -> Group:
    """Everything that happened to one sample, in order, and a person's review of it: per
    stage, its calls and the record fields it wrote (as the method's record model declares
    them; fields it does not declare last); a changed free-text response as a word diff
    (``plain``: marked ``[-old-]{+new+}``)."""
    stored = store.record(sid)
    if stored is None:
        raise KeyError(sid)
    rec = record_of(store.get_meta("method")).read(stored)
    review = None
    if ReviewStore.exists(store.dir):
        reviews = ReviewStore(store.dir)
        review = reviews.get(sid)
        reviews.close()
    s = rec.sample
    free = s is not None and not s.is_mc
    original = s.label if s is not None else None
    diff = response_diff(original, rec.final) if free else None
    parts: list[Any] = []
    head = Table.grid(padding=(0, 2))
    head.add_row("id", rec.id)
    head.add_row("source", s.source if s is not None else str(rec.row))
    if s is not None:
        head.add_row("question", Text(s.question))
        for letter, o in zip(s.letters, s.options, strict=True):
            head.add_row("", Text(f"{letter}. {o}"))
        head.add_row("given response" if free else "given label",
                     "(in the correction below)" if diff else Text(s.label))
    head.add_row("fate", Text(str(rec.fate), style="bold magenta"))
    head.add_row("reason", Text(str(rec.reason)))
    head.add_row("final response" if free else "final label",
                 diff_summary(diff, plain) if diff else Text(str(rec.final)))
    edit = None
    if review is not None:
        rv = review.as_dict(rec.fate, rec.final)
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
        parts.append(_diff_panel(diff, "correction (kept)" if rec.fate == Fate.RELABELED_KEPT
                                 else f"proposed correction ({rec.fate}: not kept)", plain))
    if edit:
        parts.append(_diff_panel(edit, "the reviewer's edit against the original", plain))
    record, calls = type(rec), store.calls(sid)
    written = list(dict.fromkeys(record.stage_of(n) for n in record.state_fields()))
    for stage in [*(w for w in written if w is not None),
                  *dict.fromkeys(st for st, _ in calls if st not in written)]:
        parts += [_call_panel(st, c, full) for st, c in calls if st == stage]
        if stage in written:
            parts.append(fields_panel(rec, list(record.written_at(stage)),
                                      STAGE_TITLES.get(stage, str(stage)), full))
    others = [n for n in [*record.model_fields, *(rec.model_extra or {})]
              if n not in record.state_fields() and n not in Row.model_fields]
    parts.append(fields_panel(rec, others, "more fields", full))
    for e in rec.errors:
        parts.append(Text(f"error: {e}", style="bold red"))
    return Group(*(p for p in parts if p is not None))


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
