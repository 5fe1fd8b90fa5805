"""Thin CLEAR nodes: sampled answers, self-reflection, confidence; candidate and judge."""

from __future__ import annotations

import asyncio
import math
from typing import Literal

from langgraph.graph import END
from langgraph.runtime import Runtime

from robustft.agents.base import Deps
from robustft.agents.certainty import reflect_on
from robustft.agents.corrector import propose
from robustft.agents.judge import judge
from robustft.agents.matcher import compare, p_same
from robustft.agents.sampler import sample_answers
from robustft.graph.clear_state import ClearState
from robustft.graph.nodes import failures
from robustft.methods.confidence import combine, cosine, observed_consistency, reflection_certainty
from robustft.methods.matching import exact_match, normalise, token_f1
from robustft.schemas import AgentCall, Sample


async def _similarities(deps: Deps, s: Sample, answers: list[str | None]
                        ) -> tuple[list[float], list[float], list[AgentCall]]:
    """(s_i, r_i, matcher calls) of each sampled answer against the dataset's response.
    Embeddings compare normalised texts, so case and punctuation do not lower the similarity;
    the judge similarity is the matcher's probability that the two agree (its verdict, 1 or
    0, without logprobs; 0 when unparsed)."""
    matches = [float(exact_match(a, s.label, s.is_mc)) for a in answers]
    if s.is_mc:
        return matches, matches, []
    if deps.config.clear.similarity == "judge":
        calls = list(await asyncio.gather(*(compare(deps, s, a, sample_index=i)
                                            for i, a in enumerate(answers) if a)))
        it = iter(calls)
        sims = []
        for a in answers:
            c = next(it) if a else None
            p = p_same(c) if c is not None else None
            sims.append(p if p is not None else float(c is not None and c.answer == "same"))
        return sims, matches, calls
    if deps.config.clear.similarity == "embedding" and deps.embedder is not None:
        texts = [" ".join(normalise(t)) for t in [s.label, *(a or "" for a in answers)]]
        vecs = await deps.embedder.aembed(texts)
        sims = [cosine(vecs[0], v) if a else 0.0 for a, v in zip(answers, vecs[1:],
                                                                  strict=True)]
        return sims, matches, []
    return [token_f1(a, s.label) if a else 0.0 for a in answers], matches, []


async def sample_node(state: ClearState, runtime: Runtime[Deps]) -> ClearState:
    deps, s = runtime.context, state["sample"]
    calls = await sample_answers(deps, s, deps.config.clear.k)
    answers = [c.answer for c in calls if not c.error]
    sims, matches, judged = await _similarities(deps, s, answers)
    return {"calls": [*calls, *judged], "errors": failures([*calls, *judged]),
            "sampled": answers, "similarities": sims, "matches": matches}


async def reflect_node(state: ClearState, runtime: Runtime[Deps]) -> ClearState:
    calls = await reflect_on(runtime.context, state["sample"], state["sample"].label)
    return {"calls": calls, "errors": failures(calls), "verdicts": [c.answer for c in calls]}


async def score(state: ClearState, runtime: Runtime[Deps]) -> ClearState:
    c = runtime.context.config.clear
    o = observed_consistency(state["similarities"], state["matches"], c.alpha)
    cert = reflection_certainty(state["verdicts"])
    return {"observed": o, "certainty": cert, "confidence": combine(o, cert, c.beta)}


def start(state: ClearState) -> list[str] | Literal["propose"]:
    """A scored sample below the threshold resumes at correction; a new one is scored."""
    return "propose" if "threshold" in state else ["sample_answers", "self_reflect"]


async def propose_node(state: ClearState, runtime: Runtime[Deps]) -> ClearState:
    call = await propose(runtime.context, state["sample"])
    return {"calls": [call], "errors": failures([call]), "candidate": call.answer}


def after_propose(state: ClearState) -> Literal["judge", "__end__"]:
    """Judge only a real alternative: no candidate, an error or the same answer ends here."""
    s, cand = state["sample"], state.get("candidate")
    if state.get("errors") or cand is None:
        return END
    return END if exact_match(cand, s.label, s.is_mc) else "judge"


async def judge_node(state: ClearState, runtime: Runtime[Deps]) -> ClearState:
    """Confidence that the candidate beats the original, with the same machinery: O from k
    sampled judge verdicts (share choosing the candidate), S from self-reflection on the
    candidate, C = β·O + (1−β)·S."""
    deps, s, c = runtime.context, state["sample"], runtime.context.config.clear
    votes, verdicts = await asyncio.gather(
        judge(deps, s, s.label, state["candidate"], c.judge_k),
        reflect_on(deps, s, state["candidate"]))
    picks = [float(v.answer == "candidate") for v in votes if not v.error]
    o = observed_consistency(picks, picks, c.alpha)
    cert = reflection_certainty([v.answer for v in verdicts])
    conf = combine(o, cert, c.beta)
    return {"calls": [*votes, *verdicts], "errors": failures([*votes, *verdicts]),
            "judge_votes": [v.answer for v in votes],
            "candidate_verdicts": [v.answer for v in verdicts],
            "judge_confidence": None if math.isnan(conf) else conf}
