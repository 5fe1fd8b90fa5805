"""Word-level differences between a response and its correction (pure).

A correction keeps the user's words and fixes only what is wrong, so readers (trace, viewer,
review queue, HTML report) show it as a word diff against the original, and selection takes
the correction's entropy over the changed words only.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

_WORD = re.compile(r"\S+|\s+")

Op = tuple[str, str]  # ("equal" | "delete" | "insert", text)


def words(text: str) -> list[str]:
    """The text cut into words and the whitespace between them (joined back: the text)."""
    return _WORD.findall(text)


def _opcodes(old: str, new: str) -> tuple[list[str], list[str], list]:
    a, b = words(old), words(new)
    # whitespace runs compare by presence only: a re-wrapped line is not a change
    key = [w if w.strip() else " " for w in a], [w if w.strip() else " " for w in b]
    return a, b, SequenceMatcher(None, *key, autojunk=False).get_opcodes()


def word_diff(old: str, new: str) -> list[Op]:
    """The edit from ``old`` to ``new`` as runs of equal, deleted and inserted text (a
    replacement is a delete followed by an insert). Whitespace is compared by presence only
    (a re-wrapped line is no change; equal runs carry ``new``'s whitespace): joining the
    "equal" and "insert" runs gives ``new``, the "equal" and "delete" runs ``old`` up to
    whitespace."""
    a, b, ops = _opcodes(old, new)
    out: list[Op] = []

    def add(kind: str, text: str) -> None:
        if not text:
            return
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))

    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            add("equal", "".join(b[j1:j2]))
        else:
            add("delete", "".join(a[i1:i2]))
            add("insert", "".join(b[j1:j2]))
    return out


def changed_spans(old: str, new: str) -> list[tuple[int, int]]:
    """Character ranges [start, end) of ``new`` that are not in ``old`` (inserted or
    replacing words; whitespace-only changes are ignored). A pure deletion has no span of
    its own: it is marked by the word after it (or before it, at the end), so every change
    has at least one token to be uncertain about."""
    a, b, ops = _opcodes(old, new)
    starts = [0]
    for w in b:
        starts.append(starts[-1] + len(w))
    spans: list[tuple[int, int]] = []
    for tag, _i1, _i2, j1, j2 in ops:
        if tag == "equal":
            continue
        if j2 > j1 and "".join(b[j1:j2]).strip():
            spans.append((starts[j1], starts[j2]))
            continue
        near = next((j for j in [*range(j2, len(b)), *range(j1 - 1, -1, -1)]
                     if b[j].strip()), None)
        if near is not None and (tag != "insert"):  # a deletion: mark its neighbour
            spans.append((starts[near], starts[near + 1]))
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def changed_words(old: str, new: str) -> int:
    """How many words a correction changed: a run of replaced words counts its longer side
    (one word for another is 1), a deletion or insertion its words."""
    n, deleted = 0, 0
    for kind, text in word_diff(old, new):
        count = len(text.split())
        if kind == "delete":
            deleted = count
            n += count
        elif kind == "insert":
            n += max(count - deleted, 0)
            deleted = 0
        else:
            deleted = 0
    return n
