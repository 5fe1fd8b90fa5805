"""CLEAR sampler: k answers to the question at temperature T (observed consistency)."""

import asyncio

from robustft.agents.base import Deps, run_agent
from robustft.schemas import AgentCall, Sample


async def sample_answers(deps: Deps, sample: Sample, k: int) -> list[AgentCall]:
    return list(await asyncio.gather(*(
        run_agent(deps, "sampler", "reasoning", sample, sample_index=i) for i in range(k))))
