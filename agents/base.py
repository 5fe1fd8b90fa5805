"""Shared render → call → parse step and the dependencies every agent receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from robustft.config import Config, resolved_endpoint
from robustft.llm.client import CallError, LLMClient, Target
from robustft.llm.prompt_files import Prompt
from robustft.methods.parsing import Parsed, answer_format, parse_answer
from robustft.methods.scoring import mean_nll, mean_token_entropy, token_at, tokens_in_span
from robustft.retrieval.embedder import Embedder
from robustft.retrieval.index import CleanIndex
from robustft.schemas import AgentCall, Completion, Sample


@dataclass(frozen=True)
class Deps:
    """What agents and nodes need for one stage of a run; passed as the graph's runtime
    context, never changed during the stage (a later stage gets its own, with
    :func:`dataclasses.replace`)."""

    config: Config
    client: LLMClient
    prompts: dict[str, Prompt]
    index: CleanIndex | None = None  # RobustFT relabel stage: the clean-sample index
    embedder: Embedder | None = None  # CLEAR's embedding similarity
    phase: Literal["detect", "relabel"] = "detect"  # RobustFT: relabel once all are detected


def _logprob_summary(call: AgentCall, completion: Completion, start: int,
                     spans: list[tuple[int, int]]) -> None:
    """Mean NLL of the reply, the top logprobs at the answer's first token (at ``start``) and
    the mean token entropy over ``spans`` of the reply (the answer, or what a correction
    changed)."""
    lps = completion.logprobs
    if not lps:
        return
    tokens = [t.token for t in lps]
    call.mean_nll = mean_nll([t.logprob for t in lps])
    if start < 0:
        return
    i = token_at(tokens, start)
    if i is not None:
        call.answer_top_logprobs = lps[i].top or [(lps[i].token, lps[i].logprob)]
    covered = sorted({j for s, e in spans for j in tokens_in_span(tokens, s, e)})
    if covered:
        call.answer_token_entropy = mean_token_entropy([lps[j].top for j in covered])


async def run_agent(deps: Deps, role: str, prompt_name: str, sample: Sample, *,
                    parser: Callable[[str], Parsed] | None = None, sample_index: int = 0,
                    focus: Callable[[Parsed], list[tuple[int, int]]] | None = None,
                    **values: Any) -> AgentCall:
    """Render ``prompt_name`` for ``sample``, call ``role``'s endpoint, parse the reply.

    ``parser`` defaults to the sample's answer parser (option letter or short answer);
    ``sample_index`` numbers repeated samples of one sampled request (cache key only);
    ``focus`` gives the character spans of the reply whose tokens the answer's entropy is
    taken over (default: the parsed answer).
    Never raises on a failed call or bad model text: the AgentCall carries the error or the
    "unparsed" status next to the raw reply.
    """
    prompt = deps.prompts[prompt_name]
    messages = prompt.render(**sample.prompt_vars(), **values)
    urls, model, key_env = resolved_endpoint(deps.config, role)
    rc = deps.config.role(role)
    call = AgentCall(role=role, prompt=prompt_name, prompt_hash=prompt.hash, model=model,
                     endpoint=", ".join(urls) or None, messages=messages)
    try:
        if not urls:
            raise CallError("no endpoint: set --base-url, OPENAI_BASE_URL or endpoint.base_url",
                            0)
        limits = (rc.requests_per_minute, rc.tokens_per_minute)
        held = (prompt.structured and sample.letters and parser is None
                and deps.config.endpoint.structured_outputs)
        completion = await deps.client.chat(
            Target(urls, model, key_env, *limits), messages, temperature=rc.temperature,
            max_tokens=rc.max_tokens, top_logprobs=rc.top_logprobs, stop=prompt.stop,
            sample_index=sample_index,
            response_format=answer_format(prompt.structured, sample.letters) if held else None)
    except CallError as e:
        call.parse_status, call.error, call.attempts = "error", e.reason, e.attempts
        return call
    parsed = (parser or (lambda t: parse_answer(t, sample.letters, sample.long_form)))(
        completion.text)
    call.model, call.raw, call.answer = completion.model, completion.text, parsed.answer
    call.parse_status, call.reasoning = parsed.status, parsed.reasoning
    call.thinking, call.reasoning_tokens = completion.thinking, completion.reasoning_tokens
    call.structured, call.batched = completion.structured, completion.batched
    if completion.thinking_truncated:  # no answer yet, not a wrong one
        call.parse_status, call.answer, call.reasoning = "truncated", None, None
    call.prompt_tokens, call.completion_tokens = (completion.prompt_tokens,
                                                  completion.completion_tokens)
    call.usage_source, call.latency_s = completion.usage_source, completion.latency_s
    call.attempts, call.cached = completion.attempts, completion.cached
    call.endpoint = completion.endpoint or call.endpoint
    spans = focus(parsed) if focus and parsed.answer is not None else [(parsed.start, parsed.end)]
    _logprob_summary(call, completion, parsed.start, spans)
    return call
