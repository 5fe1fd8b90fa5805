"""Reasoning models: thinking returned as ``reasoning_content`` or inline ``<think>`` blocks is
kept in the trace and never parsed as the answer; answer logprobs come from the final answer's
tokens; a reply cut inside its thinking is "truncated", not a wrong answer. A real scripted
HTTP server plays the model."""

from __future__ import annotations

import asyncio
import math

import pytest

from eval.scripted_server import Reply, ScriptedServer, mc_reply
from robustft.agents.base import Deps
from robustft.agents.direct import answer_direct
from robustft.config import Config
from robustft.llm.client import LLMClient
from robustft.llm.prompt_files import load_prompts
from robustft.methods.parsing import split_thinking
from robustft.methods.scoring import answer_suffix
from robustft.schemas import Sample

SAMPLE = Sample(id="q1", row=1, source="t", question="Which is a mammal?",
                options=["trout", "whale", "shark"], label="B")
THINKING = "The user asks about mammals. Maybe Answer: C? No, sharks are fish."


def test_split_thinking():
    assert split_thinking("<think>hmm</think>\nAnswer: B") == ("\nAnswer: B", "hmm", False)
    # the chat template opened the block in the prompt: the reply starts inside it
    assert split_thinking("hmm</think>Answer: B") == ("Answer: B", "hmm", False)
    assert split_thinking("<think>still thinking") == ("", "still thinking", True)
    assert split_thinking("Answer: B") == ("Answer: B", None, False)
    assert split_thinking("") == ("", None, False)


def test_answer_suffix():
    tokens = ["<", "think", ">", "hmm", "</", "think", ">", "\n", "Answer", ":", " B"]
    assert answer_suffix(tokens, "\nAnswer: B") == 7
    assert answer_suffix(tokens, "Answer: C") is None  # not what the tokens spell
    assert answer_suffix(tokens, "") is None


def _direct(script, max_tokens: int = 64):
    cfg = Config()
    cfg.roles["direct"].max_tokens = max_tokens
    with ScriptedServer(script) as server:
        cfg.endpoint.base_url, cfg.endpoint.model = server.base_url, "m"

        async def go():
            client = LLMClient(cfg.endpoint)
            try:
                return await answer_direct(Deps(config=cfg, client=client,
                                                prompts=load_prompts(None)), SAMPLE)
            finally:
                await client.aclose()
        return asyncio.run(go())


def _reasoning(inline: bool, truncated: bool = False):
    def script(body):
        r = mc_reply("B", ["A", "B", "C"], confidence=0.9, reasoning="Whales nurse their young.")
        return Reply(r.text, r.dist, thinking=THINKING, inline=inline, truncated=truncated)
    return script


@pytest.mark.parametrize("inline", [False, True], ids=["reasoning_content", "inline-think"])
def test_thinking_is_kept_and_never_parsed(inline):
    call = _direct(_reasoning(inline))
    assert call.parse_status == "ok" and call.answer == "B"  # not the "C" mused in thinking
    assert call.thinking == THINKING and "think>" not in (call.raw or "")
    assert call.reasoning_tokens and call.completion_tokens > call.reasoning_tokens
    # the answer token's distribution is the final answer's (0.9 on B), not a thinking token's
    top, lp = call.answer_top_logprobs[0]
    assert top.strip() == "B" and math.exp(lp) == pytest.approx(0.9)


@pytest.mark.parametrize("inline", [False, True], ids=["reasoning_content", "inline-think"])
def test_reply_cut_inside_thinking_is_truncated_not_wrong(inline):
    call = _direct(_reasoning(inline, truncated=True))
    assert call.parse_status == "truncated" and call.answer is None
    assert call.thinking == THINKING and call.error is None
    assert call.completion_tokens > 0  # the thinking tokens are counted
