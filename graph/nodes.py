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
from robustft.agents.context import answer_with_context, correct
from robustft.agents.direct import answer_direct
from robustft.agents.matcher import judge_response, judgement
from robustft.agents.reasoning import answer_with_reasoning
from robustft.agents.reflection import reflect
from robustft.agents.reviewer import review, review_correction
from robustft.graph.state import SampleState
from robustft.methods.matching import agrees, check, exact_match, match_mode, token_f1
from robustft.methods.scoring import agreement_entropy, answer_entropy
from robustft.methods.verdicts import sample_verdict
from robustft.schemas import AgentCall, Judgement, Sample, Verdict


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
    """Clean when the experts agree with the given label (letters, token F1 or equal text).
    Free text judged by the matcher (long-form by default, ``detect.match``): noisy when a
    judge says the response is *wrong* against an expert's response, unsure when none says
    so but one cannot tell; a valid alternative is consistent. A failed judge call makes the
    sample an error."""
    if state.get("errors"):
        return {"verdict": Verdict.ERROR, "verdict_reason": "; ".join(state["errors"])}
    deps, s = runtime.context, state["sample"]
    d = deps.config.detect
    answers = {r: a for r, a in state["experts"].items() if r in d.experts}
    mode = match_mode(d.match, s.is_mc, s.long_form)
    if mode != "judge":
        verdict, reason = check(answers, s.label, d.policy, s.is_mc, d.fuzzy_threshold,
                                mode=mode)
        if s.is_mc:
            return {"verdict": verdict, "verdict_reason": reason}
        return {"verdict": verdict, "verdict_reason": reason,
                "judgements": [_compared(r, a, s.label, mode, d.fuzzy_threshold)
                               for r, a in answers.items()]}
    judgements = {r: _cheap_judgement(r, a, s, d.fuzzy_threshold) for r, a in answers.items()}
    asked = [r for r, j in judgements.items() if j is None]
    calls = list(await asyncio.gather(*(judge_response(deps, s, answers[r]) for r in asked)))
    if failures(calls):
        return {"calls": calls, "errors": failures(calls), "verdict": Verdict.ERROR,
                "verdict_reason": "; ".join(failures(calls))}
    judgements |= {r: judgement(r, c) for r, c in zip(asked, calls, strict=True)}
    verdict = sample_verdict({r: j["verdict"] for r, j in judgements.items()}, d.policy)
    return {"calls": calls, "verdict": verdict, "judgements": list(judgements.values()),
            "verdict_reason": _judged_reason(judgements, verdict, d.policy)}


def _cheap_judgement(ref: str, answer: str | None, s: Sample, threshold: float) -> dict | None:
    """A judgement that needs no judge: an unparsed expert answer (unsure: no reference),
    equal normalised text, or (short answers) token F1 at the threshold; None otherwise."""
    if answer is None:
        return {"ref": ref, "verdict": Judgement.UNSURE, "how": "none", "p_contradiction": None,
                "reason": "the expert's reply did not parse: no reference to judge against"}
    if exact_match(answer, s.label, False):
        return {"ref": ref, "verdict": Judgement.CONSISTENT, "how": "exact",
                "p_contradiction": 0.0, "reason": "the same normalised text"}
    if not s.long_form and token_f1(answer, s.label) >= threshold:
        return {"ref": ref, "verdict": Judgement.CONSISTENT, "how": "f1",
                "p_contradiction": 0.0, "reason": f"token F1 ≥ {threshold}"}
    return None


def _compared(ref: str, answer: str | None, label: str, mode: str, threshold: float) -> dict:
    """A free-text expert answer compared by text (``detect.match`` exact or f1): a
    mismatch counts against the response when a correction's confirmation is voted on."""
    if answer is None:
        return {"ref": ref, "verdict": Judgement.UNSURE, "how": "none", "p_contradiction": None,
                "reason": "the expert's reply did not parse"}
    same = agrees(answer, label, mode, threshold)
    return {"ref": ref, "verdict": Judgement.CONSISTENT if same else Judgement.CONTRADICTS,
            "how": mode, "p_contradiction": None,
            "reason": "the same text" if same else f"a different answer ({mode})"}


def _judged_reason(judgements: dict[str, dict], verdict: str, policy: str) -> str:
    parts = []
    for r, j in judgements.items():
        p = f", P(wrong) {j['p_contradiction']:.2f}" if j.get("p_contradiction") is not None \
            and j["how"] == "judge" else ""
        why = (j.get("reason") or "").strip().splitlines()
        said = f": {why[-1][:160]}" if why and j["verdict"] == Judgement.CONTRADICTS else ""
        parts.append(f"{r} {j['verdict'] or 'unparsed'}{p}{said}")
    return f"judged against each expert: {'; '.join(parts)} → {verdict} ({policy})"


def _relabel_entry(deps: Deps) -> Literal["retrieve", "reviewer"]:
    return "retrieve" if deps.config.relabel.context else "reviewer"


def after_checker(state: SampleState, runtime: Runtime[Deps]
                  ) -> Literal["retrieve", "reviewer", "__end__"]:
    """Noisy samples go on to relabeling when the graph runs in the relabel phase (after the
    detect barrier); in the detect phase, and for clean or failed samples, the run ends here."""
    deps = runtime.context
    return (_relabel_entry(deps) if state["verdict"] == Verdict.NOISY
            and deps.phase == "relabel" else END)


def start(state: SampleState, runtime: Runtime[Deps]
          ) -> list[str] | Literal["retrieve", "reviewer"]:
    """A detected noisy sample resumes at relabeling; a new one starts with both experts."""
    if state.get("verdict") == Verdict.NOISY:
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


def _references(state: SampleState) -> list[str]:
    """The experts' parsed responses, shown to a correction as references."""
    return [a for a in (state.get("experts") or {}).values() if a is not None]


def _problems(state: SampleState) -> list[str]:
    """What the judges found wrong (their reasons for each contradiction)."""
    return [(j.get("reason") or "").strip() for j in state.get("judgements") or []
            if j.get("verdict") == Judgement.CONTRADICTS and (j.get("reason") or "").strip()]


async def context_relabel(state: SampleState, runtime: Runtime[Deps]) -> SampleState:
    """A context-enhanced answer; for a long-form response, its minimal correction with the
    neighbours as examples of the dataset's style."""
    deps, s = runtime.context, state["sample"]
    if s.long_form:
        call = await correct(deps, s, _references(state), _problems(state),
                             state.get("neighbours") or [])
    else:
        call = await answer_with_context(deps, s, state["neighbours"])
    update = {"calls": [call], "context_answer": call.answer, "errors": failures([call])}
    if not deps.config.relabel.reviewer:  # ablation: the context answer is final
        update |= _selection_entropy(deps, s, call, [state.get("reasoning_answer"), call.answer])
    return update


def after_context(state: SampleState, runtime: Runtime[Deps]) -> Literal["reviewer", "__end__"]:
    if state.get("errors") or not runtime.context.config.relabel.reviewer:
        return END
    return "reviewer"


async def reviewer(state: SampleState, runtime: Runtime[Deps]) -> SampleState:
    """The final relabel; for a long-form response, the final minimal correction."""
    deps, s = runtime.context, state["sample"]
    if s.long_form:
        call = await review_correction(deps, s, state.get("context_answer"),
                                       _references(state), _problems(state))
    else:
        call = await review(deps, s, state.get("reasoning_text", ""),
                            state.get("reasoning_answer"), state.get("context_answer"))
    answers = [state.get("reasoning_answer"), state.get("context_answer"), call.answer]
    return {"calls": [call], "errors": failures([call]), "reviewer_answer": call.answer,
            "reviewer_reasoning": call.reasoning,
            **_selection_entropy(deps, s, call, answers)}
