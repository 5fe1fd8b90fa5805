"""Matcher: is the dataset's free-text response wrong, judged against one reference response
and the prompt? Three-way verdict (consistent / contradicts / unsure) with the judge's short
reason and, where the endpoint gives logprobs, P(contradicts)."""

from robustft.agents.base import Deps, run_agent
from robustft.methods.verdicts import p_contradiction, parse_judgement
from robustft.schemas import AgentCall, Sample


async def judge_response(deps: Deps, sample: Sample, reference: str,
                         response: str | None = None, sample_index: int = 0) -> AgentCall:
    """The judge's verdict on ``response`` (default: the sample's given response) with
    ``reference`` beside it. An unparsed verdict leaves ``answer`` None: callers count it as
    unsure, never as a contradiction."""
    return await run_agent(deps, "matcher", "verify", sample, parser=parse_judgement,
                           sample_index=sample_index, reference=reference,
                           response=sample.label if response is None else response)


def judgement(ref: str, call: AgentCall) -> dict:
    """What the trace keeps of one judge call: reference, verdict, reason, P(contradicts)."""
    return {"ref": ref, "verdict": call.answer, "reason": (call.reasoning or call.raw or "")[:500],
            "p_contradiction": round(p_contradiction(call.answer, call.answer_top_logprobs), 6),
            "how": "judge"}
