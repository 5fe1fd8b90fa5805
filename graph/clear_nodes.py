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
from robustft.agents.matcher import judge_response, judgement
from robustft.agents.sampler import sample_answers
from robustft.graph.clear_state import ClearState
from robustft.graph.nodes import failures
from robustft.methods.confidence import combine, cosine, observed_consistency, reflection_certainty
from robustft.methods.matching import exact_match, normalise, similarity_mode, token_f1
from robustft.schemas import AgentCall, Sample


async def _judged(deps: Deps, s: Sample, answers: list[str | None], matches: list[float]
                  ) -> tuple[list[float], list[AgentCall], list[dict]]:
    """s_i = 1 − P(the response contradicts sampled answer i), from the matcher's
    correctness verdict (BSDetector's non-contradiction); an answer with the same normalised
    text needs no judge (s_i = 1), an unparsed verdict counts as unsure (0.5)."""
    asked = [i for i, a in enumerate(answers) if a and not matches[i]]
    calls = list(await asyncio.gather(*(judge_response(deps, s, answers[i], sample_index=i)
                                        for i in asked)))
    judged = {i: judgement(f"sample {i + 1}", c) for i, c in zip(asked, calls, strict=True)}
    sims, kept = [], []
    for i, a in enumerate(answers):
        if i in judged:
            j = judged[i]
        elif a:
            j = {"ref": f"sample {i + 1}", "verdict": "consistent", "how": "exact",
                 "p_contradiction": 0.0, "reason": "the same normalised text"}
        else:
            sims.append(0.0)
            continue
        sims.append(1.0 - j["p_contradiction"])
        kept.append(j)
    return sims, calls, kept


async def _similarities(deps: Deps, s: Sample, answers: list[str | None]
                        ) -> tuple[list[float], list[float], list[AgentCall], list[dict]]:
    """(s_i, r_i, matcher calls, judgements) of each sampled answer against the dataset's
    response. Embeddings compare normalised texts, so case and punctuation do not lower the
    similarity; the judge similarity is non-contradiction (:func:`_judged`)."""
    matches = [float(exact_match(a, s.label, s.is_mc)) for a in answers]
    mode = similarity_mode(deps.config.clear.similarity, s.is_mc, s.long_form)
    if mode == "letter":
        return matches, matches, [], []
    if mode == "judge":
        sims, calls, judgements = await _judged(deps, s, answers, matches)
        return sims, matches, calls, judgements
    if mode == "embedding" and deps.embedder is not None:
        texts = [" ".join(normalise(t)) for t in [s.label, *(a or "" for a in answers)]]
        vecs = await deps.embedder.aembed(texts)
        sims = [cosine(vecs[0], v) if a else 0.0 for a, v in zip(answers, vecs[1:],
                                                                  strict=True)]
        return sims, matches, [], []
    return [token_f1(a, s.label) if a else 0.0 for a in answers], matches, [], []


async def sample_node(state: ClearState, runtime: Runtime[Deps]) -> ClearState:
    deps, s = runtime.context, state["sample"]
    calls = await sample_answers(deps, s, deps.config.clear.k)
    answers = [c.answer for c in calls if not c.error]
    sims, matches, judged, judgements = await _similarities(deps, s, answers)
    return {"calls": [*calls, *judged], "errors": failures([*calls, *judged]),
            "sampled": answers, "similarities": sims, "matches": matches,
            **({"judgements": judgements} if judgements else {})}


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
    """A candidate: a fresh answer, or the long-form response minimally corrected with the
    sampled answers as references."""
    call = await propose(runtime.context, state["sample"],
                         [a for a in state.get("sampled") or [] if a])
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
