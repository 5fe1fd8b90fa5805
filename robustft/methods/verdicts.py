"""Free-text verdicts (pure): a judge's three-way verdict, the sample's verdict from its
judgements, and whether a correction that changed nothing confirms the response.

Noise in open-ended data means the response is *wrong* (it contradicts a reference or the
prompt, or fails the instruction), not that it differs: a judge says ``consistent`` (the same
answer or a valid alternative), ``contradicts`` or ``unsure``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from robustft.methods.parsing import Parsed, parse_choice
from robustft.schemas import Judgement, Verdict

LETTER = {"A": Judgement.CONSISTENT, "B": Judgement.CONTRADICTS, "C": Judgement.UNSURE}
_WORDS = ((Judgement.UNSURE, r"\bunsure\b|\bnot sure\b|\bcannot tell\b"),
          (Judgement.CONTRADICTS, r"\bcontradicts?\b|\bwrong\b|\bincorrect\b"),
          (Judgement.CONSISTENT, r"\bconsistent\b|\bvalid alternative\b|\bcorrect\b"))


def parse_judgement(text: str | None) -> Parsed:
    """A verdict from the last ``Answer: A|B|C`` (or a bare letter), else from a final line
    naming the verdict in words; "unparsed" otherwise (callers count it as unsure, never as
    a contradiction)."""
    p = parse_choice(text, list(LETTER))
    if p.answer is not None:
        return Parsed(LETTER[p.answer], p.status, p.reasoning, p.start, p.end)
    lines = [x for x in (text or "").strip().splitlines() if x.strip()]
    last = lines[-1].lower() if lines else ""
    if re.match(r"^[\W_]*(answer|verdict)\b", last):
        for verdict, pattern in _WORDS:
            if re.search(pattern, last):
                return Parsed(verdict, "ok", "\n".join(lines[:-1]).strip())
    return Parsed(None, "unparsed", (text or "").strip())


def p_contradiction(verdict: str | None, top: Sequence[tuple[str, float]] | None) -> float:
    """P(the response is wrong) from one judgement: the share of the verdict token's top
    logprobs on B among A, B and C when the endpoint gives them; else 1 for contradicts,
    0 for consistent and 0.5 for unsure or unparsed."""
    if top and verdict is not None:
        mass = {k: 0.0 for k in LETTER}
        for token, logprob in top:
            key = token.strip(" \t\n\"'*_(").upper()
            if key in mass:
                mass[key] += math.exp(logprob)
        total = sum(mass.values())
        if total > 0:
            return mass["B"] / total
    return {Judgement.CONTRADICTS: 1.0, Judgement.CONSISTENT: 0.0}.get(verdict, 0.5)


def sample_verdict(judgements: Mapping[str, str | None], policy: str) -> Verdict:
    """The checker's verdict from each expert's judgement (None: unparsed, counted as unsure).

    policy "all": noisy when any judge says contradicts, clean when all say consistent,
    else unsure. "majority": noisy when more than half say contradicts, clean when more than
    half say consistent, else unsure."""
    values = list(judgements.values())
    wrong = sum(v == Judgement.CONTRADICTS for v in values)
    right = sum(v == Judgement.CONSISTENT for v in values)
    if policy == "all":
        if wrong:
            return Verdict.NOISY
        return Verdict.CLEAN if right == len(values) else Verdict.UNSURE
    if wrong * 2 > len(values):
        return Verdict.NOISY
    return Verdict.CLEAN if right * 2 > len(values) else Verdict.UNSURE


def confirmation(judgements: Iterable[str | None], proposals_changed: Iterable[bool | None]
                 ) -> tuple[bool, int, int]:
    """(confirmed, votes "wrong", votes "right") for a flagged response that the final
    correction returned unchanged. Every agent that looked at it votes: each judge by its
    verdict (unsure and unparsed abstain), each correction by whether it changed the response
    (None: no parseable correction, abstains); the final, unchanged correction is one of
    them. Confirmed only when strictly more say right than wrong: one mistaken judge does not
    condemn a valid response, and one mistaken correction does not clear a wrong one."""
    wrong = right = 0
    for v in judgements:
        wrong += v == Judgement.CONTRADICTS
        right += v == Judgement.CONSISTENT
    for changed in proposals_changed:
        if changed is not None:
            wrong += changed
            right += not changed
    return right > wrong, wrong, right
