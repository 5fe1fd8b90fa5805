"""Context-enhanced relabeling: the nearest clean samples serve as worked examples."""

from robustft.schemas import AgentCall, Neighbour, Sample

from .base import Deps, run_agent


def _example(n: Neighbour) -> dict:
    letters = [chr(ord("A") + i) for i in range(len(n.options))]
    return {"question": n.question, "answer": n.label,
            "options": [{"letter": k, "text": t} for k, t in zip(letters, n.options,
                                                                  strict=True)]}


async def answer_with_context(deps: Deps, sample: Sample,
                              neighbours: list[Neighbour]) -> AgentCall:
    return await run_agent(deps, "context", "context", sample,
                           examples=[_example(n) for n in neighbours])
