"""CLEAR judge: k sampled verdicts on whether the candidate beats the original response."""

import asyncio

from robustft.agents.base import Deps, run_agent
from robustft.methods.parsing import Parsed, parse_choice
from robustft.schemas import AgentCall, Sample


def _which(text: str) -> Parsed:
    p = parse_choice(text, ["A", "B"])
    answer = {"A": "original", "B": "candidate"}.get(p.answer or "")
    return Parsed(answer, "ok" if answer else "unparsed", p.reasoning)


async def judge(deps: Deps, sample: Sample, original: str, candidate: str,
                k: int) -> list[AgentCall]:
    return list(await asyncio.gather(*(
        run_agent(deps, "judge", "clear_judge", sample, parser=_which, sample_index=i,
                  original=original, candidate=candidate) for i in range(k))))
