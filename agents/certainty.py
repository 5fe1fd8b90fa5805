"""CLEAR self-reflection certainty: is the proposed response correct? (two prompt variants)."""

import asyncio

from robustft.agents.base import Deps, run_agent
from robustft.methods.confidence import parse_verdict
from robustft.methods.parsing import Parsed
from robustft.schemas import AgentCall, Sample

PROMPTS = ("clear_reflect", "clear_reflect_sure")


def _verdict(text: str) -> Parsed:
    v = parse_verdict(text)
    return Parsed(v, "ok" if v else "unparsed", (text or "").strip())


async def reflect_on(deps: Deps, sample: Sample, response: str) -> list[AgentCall]:
    return list(await asyncio.gather(*(
        run_agent(deps, "certainty", name, sample, parser=_verdict, response=response)
        for name in PROMPTS)))
