"""Data records shared by every stage: samples, agent calls, per-sample decisions."""

from __future__ import annotations

import string
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

LETTERS = string.ascii_uppercase



class Fate(StrEnum):
    """What became of an input row (the ``fate`` column and ``decisions.csv``)."""

    CLEAN = "clean"  # the checker found nothing wrong: kept as it was
    CONFIRMED = "confirmed"  # flagged, but the correction found nothing wrong: kept as it was
    UNSURE = "unsure"  # the judges could not tell (detect.unsure: keep): kept as it was
    UNSURE_DROPPED = "unsure-dropped"  # ... and detect.unsure is drop or review: held out
    RELABELED_KEPT = "relabeled-kept"  # relabeled (or corrected) and selected
    RELABELED_DROPPED = "relabeled-dropped"  # relabeled but not selected, or not fixable
    ERROR = "error"


KEPT = (Fate.CLEAN, Fate.CONFIRMED, Fate.UNSURE, Fate.RELABELED_KEPT)  # in the curated outputs


class Verdict(StrEnum):
    """The checker's verdict on a sample (the ``verdict`` column)."""

    CLEAN = "clean"
    NOISY = "noisy"
    UNSURE = "unsure"  # free text: no judge found an error, at least one could not tell
    ERROR = "error"


class Judgement(StrEnum):
    """A judge's verdict on a free-text response against one reference."""

    CONSISTENT = "consistent"  # the same answer, or a valid alternative
    CONTRADICTS = "contradicts"  # a fact, number, conclusion or instruction conflicts: wrong
    UNSURE = "unsure"  # the prompt admits incompatible answers, or the judge cannot tell

# what a person can decide for a sample the agents changed, dropped or failed on
REVIEW_ACTIONS = ("accept", "restore", "drop", "edit")


class Sample(BaseModel):
    """One validated input row. ``options`` is empty for free-text samples."""

    id: str
    row: int = Field(description="1-based data row in the input file")
    source: str = Field(description="file:line, for messages")
    question: str
    options: list[str] = Field(default_factory=list)
    label: str = Field(description="given label: option letter, or answer text")
    raw: dict[str, Any] = Field(default_factory=dict, description="the input row as read")
    truncated: bool = Field(False, description="question cut to data.max_prompt_tokens")
    long_form: bool = Field(False, description="free text longer than data.long_answer_tokens: "
                            "complete responses are written and judged")

    @property
    def is_mc(self) -> bool:
        return bool(self.options)

    @property
    def letters(self) -> list[str]:
        return list(LETTERS[: len(self.options)])

    def option_items(self) -> list[dict[str, str]]:
        return [{"letter": k, "text": t} for k, t in zip(self.letters, self.options, strict=True)]

    def prompt_vars(self) -> dict[str, Any]:
        """The template variables every prompt shares: question, options, letters,
        long_answer."""
        return {"question": self.question, "options": self.option_items(),
                "letters": ", ".join(self.letters), "long_answer": self.long_form}

    def embed_text(self) -> str:
        """Question together with its options: what the index embeds."""
        opts = " ".join(f"({o['letter']}) {o['text']}" for o in self.option_items())
        return f"{self.question} {opts}".strip()


class InputError(BaseModel):
    """A row that could not become a Sample; it still appears in the outputs as an error."""

    id: str
    row: int
    source: str
    reason: str
    raw: dict[str, Any] = Field(default_factory=dict)


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    top: list[tuple[str, float]] = Field(default_factory=list)


class Completion(BaseModel):
    """What the client returns for one successful chat completion."""

    text: str
    model: str
    logprobs: list[TokenLogprob] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_source: Literal["server", "estimate"] = "server"
    latency_s: float = 0.0
    attempts: int = 1
    finish_reason: str | None = None
    cached: bool = False
    endpoint: str | None = None  # the replica that answered
    thinking: str | None = None  # a reasoning model's thinking (reasoning_content or <think>)
    thinking_truncated: bool = False  # cut by max_tokens before the thinking ended
    reasoning_tokens: int | None = None  # thinking tokens (usage details), when reported
    structured: bool = False  # sent with a response_format the endpoint accepted
    batched: bool = False  # answered through the Batch API (curate --batch)


class AgentCall(BaseModel):
    """Trace of one agent invocation: render → call → parse, raw kept next to parsed."""

    role: str
    prompt: str
    prompt_hash: str
    model: str | None = None
    endpoint: str | None = None
    messages: list[dict[str, str]] = Field(default_factory=list)
    raw: str | None = None
    answer: str | None = Field(None, description="parsed answer, None when unparsed")
    parse_status: Literal["ok", "unparsed", "truncated", "error"] = Field(
        "ok", description="truncated: cut by max_tokens inside a reasoning model's thinking")
    thinking: str | None = Field(None, description="a reasoning model's thinking")
    reasoning_tokens: int | None = Field(None, description="thinking tokens, when reported")
    reasoning: str | None = Field(None, description="text before the final answer line")
    structured: bool = Field(
        False, description="the reply was held to a JSON schema (structured outputs)")
    answer_top_logprobs: list[tuple[str, float]] | None = Field(
        None, description="top_logprobs at the answer token")
    mean_nll: float | None = Field(None, description="mean negative logprob of reply tokens")
    answer_token_entropy: float | None = Field(
        None, description="free text: mean per-token entropy over the answer span (nats)")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_source: str = "server"
    latency_s: float = 0.0
    attempts: int = 0
    cached: bool = Field(False, description="answered from the per-request cache")
    batched: bool = Field(False, description="answered through the Batch API (--batch)")
    error: str | None = None


class Neighbour(BaseModel):
    id: str
    question: str
    options: list[str] = Field(default_factory=list)
    label: str
    distance: float


class Decision(BaseModel):
    """One row of the decisions table: the fate of one input row and why."""

    id: str
    row: int
    fate: Fate
    reason: str
    original_label: str | None = None
    final_label: str | None = None
    expert_answers: dict[str, str | None] = Field(default_factory=dict)
    context_answer: str | None = None
    reviewer_answer: str | None = None
    entropy: float | None = None
    entropy_source: str | None = None
    confidence: float | None = Field(None, description="CLEAR confidence C (higher = surer)")
    neighbour_ids: list[str] = Field(default_factory=list)
