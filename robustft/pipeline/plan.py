"""``--dry-run``: the calls a run would make and their estimated tokens, without calling.

Prompt tokens are estimated by rendering every prompt for every sample (tiktoken o200k, or 4
characters per token offline). Text generated during the run and inserted into later prompts
(reasoning into reflection and reviewer prompts) is not counted; completion tokens are the
per-role ``max_tokens`` caps. Relabel (RobustFT) and correct (CLEAR) calls are upper bounds:
they happen for flagged samples only, so multiply by the share you expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from robustft.config import Config
from robustft.llm.prompt_files import Prompt
from robustft.llm.tokens import estimate_messages
from robustft.methods.matching import match_mode, similarity_mode
from robustft.pipeline.contract import Method
from robustft.schemas import Sample


def plan_calls(config: Config, prompts: dict[str, Prompt], samples: Sequence[Sample],
               method: Method) -> list[dict]:
    """One row per planned call of ``method`` (step, role, prompt): calls, estimated prompt
    tokens, max completion tokens."""
    k = config.retrieval.k
    rows = []
    for c in method.calls:
        calls = tokens = 0
        for s in samples:
            n = c.per_sample(config, s)
            if not n:
                continue
            v = c.values(config, s) if c.values is not None else {"examples": [
                {"question": s.question, "options": s.option_items(), "answer": s.label}] * k}
            tokens += estimate_messages(prompts[c.prompt].render(**s.prompt_vars(), **v)) * n
            calls += n
        if c.at_most is not None and calls > (cap := c.at_most(config, len(samples))):
            tokens, calls = tokens * cap // calls, cap
        if not calls:
            continue
        rows.append({"stage": f"{c.step} (upper bound)" if c.upper_bound else c.step,
                     "role": c.role, "prompt": c.prompt, "calls": calls,
                     "prompt_tokens": tokens,
                     "max_completion_tokens": calls * config.role(c.role).max_tokens})
    return rows


# What the methods' planned calls render their prompts with (the dry run has no replies yet:
# a reply's place is taken by the sample's own response), shared by the methods and their
# canaries, whose calls are the same prompts.

def judged_experts(config: Config, s: Sample) -> int:
    """RobustFT's matcher calls of one sample: one per expert when its answers are judged."""
    mode = match_mode(config.detect.match, s.is_mc, s.long_form)
    return len(config.detect.experts) if mode == "judge" else 0


def judged_samples(config: Config, s: Sample) -> int:
    """CLEAR's matcher calls of one sample: one per sampled answer when similarity is the
    judge's (free text)."""
    judged = similarity_mode(config.clear.similarity, s.is_mc, s.long_form) == "judge"
    return config.clear.k if judged else 0


def reviewer_vars(config: Config, s: Sample) -> dict[str, Any]:
    """The reviewer prompt's variables before any answer exists."""
    return {"reasoning": "", "reasoning_answer": "", "context_answer": ""}


def correction_vars(config: Config, s: Sample) -> dict[str, Any]:
    """RobustFT's minimal correction (correct_context): the response, one reference per
    expert, the retrieved examples."""
    k = config.retrieval.k if config.relabel.context else 0
    return {"response": s.label, "references": [s.label] * len(config.detect.experts),
            "problems": [], "examples": [{"question": s.question, "answer": s.label}] * k}


def review_correction_vars(config: Config, s: Sample) -> dict[str, Any]:
    """RobustFT's review of a correction (correct_review)."""
    return {"response": s.label, "proposal": s.label,
            "references": [s.label] * len(config.detect.experts), "problems": []}
