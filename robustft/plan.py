"""``--dry-run``: the calls a run would make and their estimated tokens, without calling.

Prompt tokens are estimated by rendering every prompt for every sample (tiktoken o200k, or 4
characters per token offline). Text generated during the run and inserted into later prompts
(reasoning into reflection and reviewer prompts) is not counted; completion tokens are the
per-role ``max_tokens`` caps. Relabel (RobustFT) and correct (CLEAR) calls are upper bounds:
they happen for flagged samples only, so multiply by the share you expect.
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import Config
from .prompts import Prompt
from .schemas import Sample
from .tokens import estimate_messages


def _steps(config: Config, method: str) -> list[tuple[str, str, str, int, dict | None]]:
    """(stage, role, prompt, calls per sample, extra variables); None = retrieved examples."""
    if method == "clear":
        c = config.clear
        resp = {"response": ""}
        return [("score", "sampler", "reasoning", c.k, {}),
                ("score", "certainty", "clear_reflect", 1, resp),
                ("score", "certainty", "clear_reflect_sure", 1, resp),
                ("correct (upper bound)", "corrector", "reasoning", 1, {}),
                ("correct (upper bound)", "judge", "clear_judge", c.judge_k,
                 {"original": "", "candidate": ""}),
                ("correct (upper bound)", "certainty", "clear_reflect", 1, resp),
                ("correct (upper bound)", "certainty", "clear_reflect_sure", 1, resp)]
    rounds, relabel = config.detect.reflection_rounds, "relabel (upper bound)"
    return [("detect", "direct", "direct", 1, {}), ("detect", "reasoning", "reasoning", 1, {}),
            ("detect", "reflection", "reflection", rounds, {"reasoning": "", "round": 1}),
            (relabel, "context", "context", 1, None),
            (relabel, "reviewer", "reviewer", 1, {"reasoning": "", "reasoning_answer": "",
                                                   "context_answer": ""})]


def plan_calls(config: Config, prompts: dict[str, Prompt], samples: Sequence[Sample],
               method: str = "robustft") -> list[dict]:
    """One row per (stage, role, prompt): calls, estimated prompt tokens, max completion
    tokens."""
    k = config.retrieval.k
    rows = []
    for stage, role, prompt, n, values in _steps(config, method):
        if n == 0:
            continue
        tokens = 0
        for s in samples:
            v = values if values is not None else {"examples": [
                {"question": s.question, "options": s.option_items(), "answer": s.label}] * k}
            tokens += estimate_messages(prompts[prompt].render(**s.prompt_vars(), **v)) * n
        rows.append({"stage": stage, "role": role, "prompt": prompt, "calls": n * len(samples),
                     "prompt_tokens": tokens,
                     "max_completion_tokens": n * len(samples) * config.role(role).max_tokens})
    return rows
