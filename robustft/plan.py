"""``--dry-run``: the calls a run would make and their estimated tokens, without calling.

Prompt tokens are estimated by rendering every prompt for every sample (tiktoken o200k, or 4
characters per token offline). Text generated during the run and inserted into later prompts
(reasoning into reflection and reviewer prompts) is not counted; completion tokens are the
per-role ``max_tokens`` caps. Relabel calls are an upper bound: they happen for noisy samples
only, so multiply by the noise rate you expect.
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import Config
from .prompts import Prompt
from .schemas import Sample
from .tokens import estimate_messages


def _vars(s: Sample) -> dict:
    return {"question": s.question, "options": s.option_items(), "letters": ", ".join(s.letters)}


def plan_calls(config: Config, prompts: dict[str, Prompt], samples: Sequence[Sample]
               ) -> list[dict]:
    """One row per (stage, role): calls, estimated prompt tokens, max completion tokens."""
    rounds, k = config.detect.reflection_rounds, config.retrieval.k
    extra = {
        "direct": {}, "reasoning": {}, "reflection": {"reasoning": "", "round": 1},
        "context": None, "reviewer": {"reasoning": "", "reasoning_answer": "",
                                      "context_answer": ""}}
    per_sample = {"direct": 1, "reasoning": 1, "reflection": rounds, "context": 1,
                  "reviewer": 1}
    rows = []
    for role, values in extra.items():
        n = per_sample[role]
        if n == 0:
            continue
        tokens = 0
        for s in samples:
            v = values if values is not None else {"examples": [
                {"question": s.question, "options": s.option_items(), "answer": s.label}] * k}
            tokens += estimate_messages(prompts[role].render(**_vars(s), **v)) * n
        rows.append({"stage": "detect" if role in ("direct", "reasoning", "reflection")
                     else "relabel (upper bound)", "role": role, "calls": n * len(samples),
                     "prompt_tokens": tokens,
                     "max_completion_tokens": n * len(samples) * config.role(role).max_tokens})
    return rows
