"""``--dry-run``: the calls a run would make and their estimated tokens, without calling.

Prompt tokens are estimated by rendering every prompt for every sample (tiktoken o200k, or 4
characters per token offline). Text generated during the run and inserted into later prompts
(reasoning into reflection and reviewer prompts) is not counted; completion tokens are the
per-role ``max_tokens`` caps. Relabel (RobustFT) and correct (CLEAR) calls are upper bounds:
they happen for flagged samples only, so multiply by the share you expect.
"""

from __future__ import annotations

from collections.abc import Sequence

from robustft.config import Config
from robustft.llm.prompt_files import Prompt
from robustft.llm.tokens import estimate_messages
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
