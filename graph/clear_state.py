"""Per-sample CLEAR state."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from robustft.schemas import AgentCall, Sample


class ClearState(TypedDict, total=False):
    sample: Sample
    calls: Annotated[list[AgentCall], operator.add]
    errors: Annotated[list[str], operator.add]
    sampled: list[str | None]  # the k sampled answers
    similarities: list[float]  # s_i of each sampled answer to the response
    matches: list[float]  # r_i: exact (normalised) match, 0 or 1
    judgements: list[dict]  # free text judged: per sampled answer {ref, verdict, reason, ...}
    verdicts: list[str | None]  # self-reflection verdicts: correct / incorrect / unsure
    observed: float
    certainty: float
    confidence: float
    threshold: float  # γ, set for the correction stage
    candidate: str | None
    judge_votes: list[str | None]  # original / candidate per sampled judge verdict
    candidate_verdicts: list[str | None]  # reflection verdicts on the candidate
    judge_confidence: float
