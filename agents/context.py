"""Context-enhanced relabeling: the nearest clean samples serve as worked examples."""

from robustft.agents.base import Deps, run_agent
from robustft.schemas import LETTERS, AgentCall, Neighbour, Sample


def _example(n: Neighbour) -> dict:
    return {"question": n.question, "answer": n.label,
            "options": [{"letter": k, "text": t} for k, t in zip(LETTERS, n.options, strict=False)]}


async def answer_with_context(deps: Deps, sample: Sample,
                              neighbours: list[Neighbour]) -> AgentCall:
    return await run_agent(deps, "context", "context", sample,
                           examples=[_example(n) for n in neighbours])
