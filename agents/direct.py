"""Direct expert: answers at once."""

from robustft.agents.base import Deps, run_agent
from robustft.schemas import AgentCall, Sample


async def answer_direct(deps: Deps, sample: Sample) -> AgentCall:
    return await run_agent(deps, "direct", "direct", sample)
