"""Per-sample graph state. Parallel experts write disjoint keys or append via reducers."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from robustft.schemas import AgentCall, Neighbour, Sample


def merge(a: dict, b: dict) -> dict:
    return {**(a or {}), **(b or {})}


class SampleState(TypedDict, total=False):
    sample: Sample
    calls: Annotated[list[AgentCall], operator.add]  # this stage's calls, in finish order
    errors: Annotated[list[str], operator.add]  # failed calls: the sample becomes an error row
    experts: Annotated[dict[str, str | None], merge]  # role -> parsed answer
    reasoning_text: str  # the reasoning expert's final reply (after reflection)
    reasoning_answer: str | None
    verdict: str  # a Verdict: clean | noisy | unsure | error
    verdict_reason: str
    judgements: list[dict]  # free text: per expert {ref, verdict, reason, p_contradiction, how}
    neighbours: list[Neighbour]
    context_answer: str | None
    reviewer_answer: str | None
    reviewer_reasoning: str | None
    entropy: float | None
    entropy_source: str | None
    answer_distribution: dict[str, float] | None
