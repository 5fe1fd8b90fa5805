"""Reviewer: weighs the reasoning answer (with its reasoning) against the context answer."""

from robustft.agents.base import Deps, run_agent
from robustft.schemas import AgentCall, Sample


async def review(deps: Deps, sample: Sample, reasoning: str, reasoning_answer: str | None,
                 context_answer: str | None) -> AgentCall:
    return await run_agent(deps, "reviewer", "reviewer", sample, reasoning=reasoning,
                           reasoning_answer=reasoning_answer or "",
                           context_answer=context_answer or "")
