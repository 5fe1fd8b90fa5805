"""Reasoning expert: step-by-step reasoning ending in an answer line."""

from robustft.agents.base import Deps, run_agent
from robustft.schemas import AgentCall, Sample


async def answer_with_reasoning(deps: Deps, sample: Sample) -> AgentCall:
    return await run_agent(deps, "reasoning", "reasoning", sample)
