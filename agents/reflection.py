"""Self-reflection: reviews the reasoning expert's last attempt and may revise its answer."""

from robustft.agents.base import Deps, run_agent
from robustft.schemas import AgentCall, Sample


async def reflect(deps: Deps, sample: Sample, previous: AgentCall, round_no: int) -> AgentCall:
    return await run_agent(deps, "reflection", "reflection", sample,
                           reasoning=previous.raw or "", round=round_no)
