"""Matcher: do two free-text responses agree (same final answer, same meaning)?"""

import math

from robustft.agents.base import Deps, run_agent
from robustft.methods.parsing import Parsed, parse_choice
from robustft.schemas import AgentCall, Sample

VERDICTS = {"A": "same", "B": "different"}


def parse_match(text: str | None) -> Parsed:
    """"same" / "different" from the last ``Answer: A|B`` (or a bare A/B); never raises."""
    p = parse_choice(text, list(VERDICTS))
    if p.answer is None:
        return p
    return Parsed(VERDICTS[p.answer], p.status, p.reasoning, p.start, p.end)


def p_same(call: AgentCall) -> float | None:
    """Probability that the responses agree, from the verdict token's top logprobs (A vs B,
    renormalised); None without logprobs or without a parsed verdict."""
    if call.answer is None or not call.answer_top_logprobs:
        return None
    probs = {"A": 0.0, "B": 0.0}
    for token, logprob in call.answer_top_logprobs:
        key = token.strip().upper()
        if key in probs:
            probs[key] += math.exp(logprob)
    total = probs["A"] + probs["B"]
    return probs["A"] / total if total > 0 else None


async def compare(deps: Deps, sample: Sample, candidate: str, reference: str | None = None,
                  sample_index: int = 0) -> AgentCall:
    """Whether ``candidate`` agrees with ``reference`` (default: the sample's given response).
    An unparsed verdict leaves ``answer`` None: callers count it as disagreement."""
    return await run_agent(deps, "matcher", "match", sample, parser=parse_match,
                           sample_index=sample_index, candidate=candidate,
                           reference=sample.label if reference is None else reference)
