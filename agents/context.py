"""Context-enhanced relabeling: the nearest clean samples serve as worked examples (multiple
choice, short answers) or, for a long-form response, as examples of the dataset's style for
a minimal correction."""

from robustft.agents.base import Deps, run_agent
from robustft.methods.diff import changed_spans
from robustft.methods.parsing import Parsed, parse_correction
from robustft.schemas import LETTERS, AgentCall, Neighbour, Sample


def _example(n: Neighbour) -> dict:
    return {"question": n.question, "answer": n.label,
            "options": [{"letter": k, "text": t} for k, t in zip(LETTERS, n.options, strict=False)]}


async def answer_with_context(deps: Deps, sample: Sample,
                              neighbours: list[Neighbour]) -> AgentCall:
    return await run_agent(deps, "context", "context", sample,
                           examples=[_example(n) for n in neighbours])


def correction_focus(original: str):
    """The reply spans a correction's entropy is taken over: the words it changed."""
    def focus(p: Parsed) -> list[tuple[int, int]]:
        return [(p.start + s, p.start + e) for s, e in changed_spans(original, p.answer)]
    return focus


async def correct(deps: Deps, sample: Sample, references: list[str], problems: list[str],
                  neighbours: list[Neighbour], role: str = "context") -> AgentCall:
    """The sample's response with only its errors corrected (``answer`` is the response
    itself when the reply says nothing is wrong); ``role`` "corrector" for CLEAR."""
    return await run_agent(
        deps, role, "correct_context", sample,
        parser=lambda t: parse_correction(t, sample.label), focus=correction_focus(sample.label),
        response=sample.label, references=references, problems=problems,
        examples=[{"question": n.question, "answer": n.label} for n in neighbours])
