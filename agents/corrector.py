"""CLEAR corrector: a candidate response for a filtered sample (same or a configured model)."""

from robustft.agents.base import Deps, run_agent
from robustft.schemas import AgentCall, Sample


async def propose(deps: Deps, sample: Sample) -> AgentCall:
    return await run_agent(deps, "corrector", "reasoning", sample)
