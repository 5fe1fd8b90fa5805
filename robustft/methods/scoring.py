"""Uncertainty scores (pure: arrays in, numbers out). All entropies are in nats.

Direction: for every score here, **lower = more certain**. Selection keeps the lowest.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

_STRIP = " \t\n\r()[]*.:_\"'▁Ġ"


def option_distribution(top: Sequence[tuple[str, float]], letters: Sequence[str]) -> np.ndarray:
    """Probability of each option letter at the answer token, renormalised over the options.

    ``top`` is the (token, logprob) list at the answer token. Tokens that normalise to the same
    letter (" B", "B", "(B") add up. Letters missing from ``top`` get 0. When no token is an
    option letter the result is all-NaN (no information).
    """
    index = {x.upper(): i for i, x in enumerate(letters)}
    mass = np.zeros(len(letters))
    for token, lp in top:
        i = index.get(token.strip(_STRIP).upper())
        if i is not None:
            mass[i] += math.exp(lp)
    total = mass.sum()
    return mass / total if total > 0 else np.full(len(letters), np.nan)


def shannon_entropy(p: Sequence[float]) -> float:
    """H(p) = -Σ p log p in nats; 0·log 0 = 0; NaN when p holds NaN or is empty."""
    arr = np.asarray(p, dtype=float)
    if arr.size == 0 or np.isnan(arr).any():
        return float("nan")
    nz = arr[arr > 0]
    return float(-(nz * np.log(nz)).sum()) + 0.0


def token_entropy(top: Sequence[tuple[str, float]]) -> float:
    """Entropy of one token's top-k distribution, renormalised over the k tokens shown.
    (Plain floats: called for every reply token, on a handful of values.)"""
    if not top:
        return float("nan")
    p = [math.exp(lp) for _, lp in top]
    total = sum(p)
    if not (0 < total < math.inf):  # NaN or no mass: no information
        return float("nan")
    return -sum(q / total * math.log(q / total) for q in p if q > 0) + 0.0


def mean_token_entropy(tops: Sequence[Sequence[tuple[str, float]]]) -> float:
    """Mean of :func:`token_entropy` over a span of tokens (free-text answers)."""
    values = [token_entropy(t) for t in tops if t]
    return sum(values) / len(values) if values else float("nan")


def mean_nll(logprobs: Sequence[float]) -> float:
    """Mean negative log-probability of the reply tokens (the reference code's "entropy")."""
    return -math.fsum(logprobs) / len(logprobs) if len(logprobs) else float("nan")


def agreement_entropy(answers: Sequence[str | None]) -> float:
    """Fallback when no logprobs exist: entropy of the empirical distribution of the agents'
    answers (reasoning expert, context-enhanced, reviewer). All agree → 0; each unparsed answer
    counts as its own distinct value. Three agents: 2-vs-1 → 0.6365, all differ → ln 3.
    """
    if not answers:
        return float("nan")
    keys = [a if a is not None else f"\0unparsed{i}" for i, a in enumerate(answers)]
    counts = np.array(list(Counter(keys).values()), dtype=float)
    return shannon_entropy(counts / counts.sum())


def answer_suffix(tokens: Sequence[str], answer: str) -> int | None:
    """Index of the first token of the final answer when the tokens spell thinking and then
    ``answer`` (the reply's content after its thinking): the shortest suffix of whole tokens
    that covers ``answer``. None when the tokens do not end with the answer's text."""
    text = answer.rstrip()
    joined = "".join(tokens).rstrip()
    if not text or not joined.endswith(text):
        return None
    need, size = len(joined) - len(text), 0
    for i, t in enumerate(tokens):
        if size >= need:
            return i
        size += len(t)
    return None


def token_at(tokens: Sequence[str], offset: int) -> int | None:
    """Index of the token covering character ``offset`` of the concatenated token texts."""
    pos = 0
    for i, t in enumerate(tokens):
        if pos <= offset < pos + len(t):
            return i
        pos += len(t)
    return None


def tokens_in_span(tokens: Sequence[str], start: int, end: int) -> list[int]:
    """Indexes of the tokens overlapping characters [start, end)."""
    out, pos = [], 0
    for i, t in enumerate(tokens):
        if pos < end and pos + len(t) > start:
            out.append(i)
        pos += len(t)
    return out


def answer_entropy(method: str, letters: Sequence[str], top: Sequence[tuple[str, float]] | None,
                   reply_nll: float | None, span_entropy: float | None
                   ) -> tuple[float, str, dict[str, float] | None]:
    """(entropy, source, option distribution) of a final answer; NaN when logprobs are missing.

    method "options": multiple choice → :func:`shannon_entropy` of :func:`option_distribution`;
    free text → mean per-token entropy over the answer span. method "robustft-official": the
    reply's mean negative log-probability.
    """
    nan = float("nan")
    if method == "robustft-official":
        ok = reply_nll is not None and not math.isnan(reply_nll)
        return (reply_nll, "mean-nll", None) if ok else (nan, "none", None)
    if letters:
        if not top:
            return nan, "none", None
        dist = option_distribution(top, letters)
        if np.isnan(dist).any():
            return nan, "none", None
        return (shannon_entropy(dist), "option-logprobs",
                {k: round(float(v), 6) for k, v in zip(letters, dist, strict=True)})
    ok = span_entropy is not None and not math.isnan(span_entropy)
    return (span_entropy, "answer-token-logprobs", None) if ok else (nan, "none", None)
