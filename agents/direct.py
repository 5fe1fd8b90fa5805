"""Direct expert: answers at once."""

from robustft.schemas import AgentCall, Sample

from .base import Deps, run_agent


async def answer_direct(deps: Deps, sample: Sample) -> AgentCall:
    return await run_agent(deps, "direct", "direct", sample)
