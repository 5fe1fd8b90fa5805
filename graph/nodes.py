"""Thin async nodes: call an agent or a pure function, return a state update.

Each router's return annotation declares the node's exits.
"""

from __future__ import annotations

import asyncio
import math
from typing import Literal

from langgraph.graph import END
from langgraph.runtime import Runtime

from robustft.agents.base import Deps
from robustft.agents.context import answer_with_context
from robustft.agents.direct import answer_direct
from robustft.agents.matcher import compare, p_same
from robustft.agents.reasoning import answer_with_reasoning
from robustft.agents.reflection import reflect
from robustft.agents.reviewer import review
from robustft.graph.state import SampleState
from robustft.methods.matching import check, exact_match, match_mode
from robustft.methods.scoring import agreement_entropy, answer_entropy
from robustft.schemas import AgentCall


def failures(calls: list[AgentCall]) -> list[str]:
    """The error messages of the failed calls, for the state's ``errors``."""
    return [f"{c.role}: {c.error}" for c in calls if c.error]


async def direct_expert(state: SampleState, runtime: Runtime[Deps]) -> SampleState:
    call = await answer_direct(runtime.context, state["sample"])
    return {"calls": [call], "experts": {"direct": call.answer}, "errors": failures([call])}


async def reasoning_expert(state: SampleState, runtime: Runtime[Deps]) -> SampleState:
    """Reasoning, then ``reflection_rounds`` self-reflections; a reflection that gives no
    parseable answer keeps the previous answer."""
    deps, sample = runtime.context, state["sample"]
    call = await answer_with_reasoning(deps, sample)
    calls, best = [call], call
    for r in range(1, deps.config.detect.reflection_rounds + 1):
        if calls[-1].error:
            break
        calls.append(await reflect(deps, sample, calls[-1], r))
        if calls[-1].answer is not None or best.answer is None:
            best = calls[-1]
    errors = failures(calls)
    return {"calls": calls, "experts": {"reasoning": best.answer}, "errors": errors,
            "reasoning_text": (best.reasoning if best.answer is not None else best.raw) or "",
            "reasoning_answer": best.answer}


async def checker(state: SampleState, runtime: Runtime[Deps]) -> SampleState:
    """Clean when the experts agree with the given label. Long-form free text (or
    ``detect.match: judge``) asks the matcher agent about each expert's answer; an unparsed
    or failed verdict counts as disagreement, a failed call makes the sample an error."""
    if state.get("errors"):
        return {"verdict": "error", "verdict_reason": "; ".join(state["errors"])}
    deps, s = runtime.context, state["sample"]
    d = deps.config.detect
    answers = {r: a for r, a in state["experts"].items() if r in d.experts}
    mode = match_mode(d.match, s.is_mc, s.long_form)
    if mode != "judge":
        verdict, reason = check(answers, s.label, d.policy, s.is_mc, d.fuzzy_threshold,
                                mode=mode)
        return {"verdict": verdict, "verdict_reason": reason}
    # identical normalised text needs no judge; unparsed answers never agree
    matches = {r: {"verdict": "same", "p_same": 1.0} for r, a in answers.items()
               if exact_match(a, s.label, False)}
    asked = [r for r, a in answers.items() if a is not None and r not in matches]
    calls = list(await asyncio.gather(*(compare(deps, s, answers[r]) for r in asked)))
    if failures(calls):
        return {"calls": calls, "errors": failures(calls), "verdict": "error",
                "verdict_reason": "; ".join(failures(calls))}
    matches |= {r: {"verdict": c.answer, "p_same": p_same(c)} for r, c in zip(asked, calls,
                                                                                strict=True)}
    same = {r: m["verdict"] == "same" for r, m in matches.items()}
    verdict, reason = check(answers, s.label, d.policy, False, same=same, mode="judge")
    return {"calls": calls, "verdict": verdict, "verdict_reason": reason,
            "match_verdicts": matches}


def _relabel_entry(deps: Deps) -> Literal["retrieve", "reviewer"]:
    return "retrieve" if deps.config.relabel.context else "reviewer"


def after_checker(state: SampleState, runtime: Runtime[Deps]
                  ) -> Literal["retrieve", "reviewer", "__end__"]:
    """Noisy samples go on to relabeling when the graph runs in the relabel phase (after the
    detect barrier); in the detect phase, and for clean or failed samples, the run ends here."""
    deps = runtime.context
    return (_relabel_entry(deps) if state["verdict"] == "noisy" and deps.phase == "relabel"
            else END)


def start(state: SampleState, runtime: Runtime[Deps]
          ) -> list[str] | Literal["retrieve", "reviewer"]:
    """A detected noisy sample resumes at relabeling; a new one starts with both experts."""
    if state.get("verdict") == "noisy":
        return _relabel_entry(runtime.context)
    return ["direct_expert", "reasoning_expert"]


def _selection_entropy(deps: Deps, s, call: AgentCall, answers: list[str | None]) -> SampleState:
    """Entropy of the final relabel call's answer (agreement of ``answers`` as fallback)."""
    entropy, source, dist = answer_entropy(
        deps.config.selection.entropy, s.letters, call.answer_top_logprobs, call.mean_nll,
        call.answer_token_entropy)
    if math.isnan(entropy) and call.answer is not None:
        entropy, source = agreement_entropy(answers), "agreement"
    return {"answer_distribution": dist, "entropy": None if math.isnan(entropy) else entropy,
            "entropy_source": source}


async def retrieve(state: SampleState, runtime: Runtime[Deps]) -> SampleState:
    deps = runtime.context
    return {"neighbours": await deps.index.neighbours(state["sample"], deps.config.retrieval.k)}


async def context_relabel(state: SampleState, runtime: Runtime[Deps]) -> SampleState:
    deps = runtime.context
    call = await answer_with_context(deps, state["sample"], state["neighbours"])
    update = {"calls": [call], "context_answer": call.answer, "errors": failures([call])}
    if not deps.config.relabel.reviewer:  # ablation: the context answer is final
        update |= _selection_entropy(deps, state["sample"], call,
                                     [state.get("reasoning_answer"), call.answer])
    return update


def after_context(state: SampleState, runtime: Runtime[Deps]) -> Literal["reviewer", "__end__"]:
    if state.get("errors") or not runtime.context.config.relabel.reviewer:
        return END
    return "reviewer"


async def reviewer(state: SampleState, runtime: Runtime[Deps]) -> SampleState:
    deps, s = runtime.context, state["sample"]
    call = await review(deps, s, state.get("reasoning_text", ""), state.get("reasoning_answer"),
                        state.get("context_answer"))
    answers = [state.get("reasoning_answer"), state.get("context_answer"), call.answer]
    return {"calls": [call], "errors": failures([call]), "reviewer_answer": call.answer,
            "reviewer_reasoning": call.reasoning,
            **_selection_entropy(deps, s, call, answers)}
