"""CLEAR corrector: a candidate response for a filtered sample (same or a configured model);
a long-form response gets a minimal correction instead of a fresh answer."""

from robustft.agents.base import Deps, run_agent
from robustft.agents.context import correct
from robustft.schemas import AgentCall, Sample


async def propose(deps: Deps, sample: Sample, references: list[str] | None = None) -> AgentCall:
    """A fresh answer (multiple choice, short answers) or, for a long-form response, the
    response with only its errors corrected, with the sampled answers as ``references``."""
    if sample.long_form:
        return await correct(deps, sample, references or [], [], [], role="corrector")
    return await run_agent(deps, "corrector", "reasoning", sample)
