"""What the viewer's blind audit page gets (``/api/audit``) and saves (``POST /api/audit``).

Before a person's verdict on a drawn row is saved, the row is served *blind*: the prompt, the
options and the original response, nothing the agents decided (no fate, verdict, reason,
final response or stratum). Once the verdict exists the agents' story comes with it, and for a
kept row whose response the agents changed, the second question (is the final response
right?) is asked.
"""

from __future__ import annotations

from typing import Any

from robustft.pipeline.audit import part
from robustft.store.audit import AuditEntry, AuditStore
from robustft.store.runstore import RunStore
from robustft.viewer.data import response_diff


def blind(store: RunStore, e: AuditEntry) -> dict[str, Any]:
    """The row as the reviewer judges it: prompt and original response only."""
    s = (store.record(e.sample_id) or {}).get("sample") or {}
    return {"question": s.get("question"),
            "options": s.get("options") or [], "response": s.get("label"),
            "judged": None if e.verdict is None else
            {"verdict": e.verdict, "reviewer": e.reviewer, "at": e.at}}


def story(store: RunStore, e: AuditEntry) -> dict[str, Any]:
    """The agents' story of a judged row, and whether its final response is asked about."""
    r = store.record(e.sample_id) or {}
    s = r.get("sample") or {}
    original = r.get("original") if r.get("original") is not None else s.get("label")
    final, fate = r.get("final"), r.get("fate")
    ask = part(fate, final is not None, final != original) == "kept changed"
    current = e.final_verdict is not None and e.judged_final == final
    return {"id": e.sample_id, "fate": fate, "reason": r.get("reason"),
            "checker": r.get("verdict"), "checker_reason": r.get("verdict_reason"),
            "final": final, "changed": final is not None and final != original,
            "diff": response_diff(original, final) if not s.get("options") else None,
            "ask_final": ask,
            "final_judged": {"verdict": e.final_verdict, "reviewer": e.final_reviewer,
                             "at": e.final_at} if ask and current else None,
            "final_stale": ask and e.final_verdict is not None and not current}


def audit_entry(store: RunStore, audit: AuditStore, index: int,
                estimates: dict[str, Any] | None) -> dict[str, Any]:
    """The ``index``-th drawn row (blind until judged), the audit's progress and estimates."""
    entries = audit.entries()
    index = max(0, index)
    todo = [i for i, e in enumerate(entries) if e.verdict is None]
    e = entries[index] if index < len(entries) else None
    return {"total": len(entries), "judged": len(entries) - len(todo), "index": index,
            "next_unjudged": next((i for i in todo if i > index), todo[0] if todo else None),
            "estimates": estimates,
            "item": blind(store, e) if e else None,
            "story": story(store, e) if e and e.verdict is not None else None}


def save_verdict(store: RunStore, audit: AuditStore, req: dict[str, Any],
                 reviewer: str) -> dict[str, Any]:
    """Store ``{index, verdict, question}``: ``index``, the row's place in the sample;
    ``question``, original (the blind verdict) or final (the agents' final response of a
    kept row they changed). Returns the row's entry."""
    entries = audit.entries()
    pos = int(req["index"])
    if not 0 <= pos < len(entries):
        raise ValueError(f"no audit row at index {pos}")
    e, verdict, question = entries[pos], str(req.get("verdict")), req.get("question", "original")
    if question not in ("original", "final"):
        raise ValueError("question must be original or final")
    if question == "original":
        saved = audit.save_verdict(e.sample_id, verdict, reviewer[:100])
    else:
        st = story(store, e) if e.verdict is not None else {"ask_final": False}
        if not st["ask_final"]:
            raise ValueError("the final response is asked about only for a judged row that "
                             "the agents changed and kept")
        saved = audit.save_final(e.sample_id, verdict, reviewer[:100], st["final"])
    return saved.as_dict()
