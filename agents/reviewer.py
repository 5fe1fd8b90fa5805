"""Reviewer: weighs the reasoning answer (with its reasoning) against the context answer; for
a long-form response, weighs the proposed correction and returns the minimal one."""

from robustft.agents.base import Deps, run_agent
from robustft.agents.context import correction_focus
from robustft.methods.matching import exact_match
from robustft.methods.parsing import UNCHANGED, parse_correction
from robustft.schemas import AgentCall, Sample


async def review(deps: Deps, sample: Sample, reasoning: str, reasoning_answer: str | None,
                 context_answer: str | None) -> AgentCall:
    return await run_agent(deps, "reviewer", "reviewer", sample, reasoning=reasoning,
                           reasoning_answer=reasoning_answer or "",
                           context_answer=context_answer or "")


async def review_correction(deps: Deps, sample: Sample, proposal: str | None,
                            references: list[str], problems: list[str]) -> AgentCall:
    """The final correction of a long-form response; ``proposal`` is the context agent's
    (None: none parsed; the response itself: it found nothing wrong)."""
    shown = ("" if proposal is None
             else UNCHANGED if exact_match(proposal, sample.label, False) else proposal)
    return await run_agent(
        deps, "reviewer", "correct_review", sample,
        parser=lambda t: parse_correction(t, sample.label), focus=correction_focus(sample.label),
        response=sample.label, proposal=shown, references=references, problems=problems)
