"""Answer extraction from model text. Never raises: unparseable text gives status "unparsed"
(unless a test plants a bug: ``TEST_BUG_ENV``).

The *last* ``Answer: X`` line wins (reflection may revise an earlier answer); the reference
code took the first and crashed on empty replies.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

_MC = re.compile(r"answer\s*(?:is)?\s*\**\s*[:：]\s*[*_(\[\s]*([A-Za-z])(?![A-Za-z0-9])",
                 re.IGNORECASE)
_BARE = re.compile(r"^\s*[*_(\[]*([A-Za-z])[)\].*_]*\s*$")
_FREE = re.compile(r"^[ \t>*_#-]*answer\s*\**\s*[:：]\**[ \t]*(.+?)[ \t]*$",
                   re.IGNORECASE | re.MULTILINE)
_EMPTY_ANSWER = re.compile(r"^[\W_]*answer\W*$", re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    answer: str | None
    status: str  # "ok" | "unparsed"
    reasoning: str  # text before the answer line (the whole text when unparsed)
    start: int = -1  # char offset of the answer in the text, -1 when unparsed
    end: int = -1


# Tests only (tests/test_errors.py): with this variable set to "parser", parse_answer raises
# a KeyError, a stand-in for a bug, so that the suite can check how the command line reports
# an internal error (traceback, exit 1) apart from a user's (message, exit 2-6).
TEST_BUG_ENV = "ROBUSTFT_TEST_BUG"
_TEST_BUG = os.environ.get(TEST_BUG_ENV) == "parser"

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def split_thinking(content: str) -> tuple[str, str | None, bool]:
    """(answer text, thinking, thinking left open) of a reply that may carry an inline
    ``<think>…</think>`` block (reasoning models without a reasoning parser). A reply whose
    template opened the block in the prompt starts inside it: everything before ``</think>``
    is thinking. An opened block never closed (cut by ``max_tokens``) leaves no answer text."""
    close = content.rfind(THINK_CLOSE)
    if close >= 0:
        head = content[:close]
        opened = head.find(THINK_OPEN)
        thinking = head[opened + len(THINK_OPEN):] if opened >= 0 else head
        return content[close + len(THINK_CLOSE):], thinking.strip(), False
    opened = content.find(THINK_OPEN)
    if opened >= 0:
        return content[:opened], content[opened + len(THINK_OPEN):].strip(), True
    return content, None, False


def _unparsed(text: str) -> Parsed:
    return Parsed(None, "unparsed", text.strip())


_JSON_ANSWER = re.compile(r'"answer"\s*:\s*"\s*([A-Za-z])')


def _json_choice(text: str, allowed: set[str]) -> Parsed | None:
    """A structured-output reply: a JSON object whose ``answer`` is an allowed letter (its
    ``reasoning``, when present, is the reasoning)."""
    try:  # trailing text after the object is noise
        obj, _ = json.JSONDecoder().raw_decode(text.lstrip())
    except ValueError:
        return None
    answer = obj.get("answer") if isinstance(obj, dict) else None
    m = _JSON_ANSWER.search(text)
    if not isinstance(answer, str) or answer.strip().upper() not in allowed or m is None:
        return None
    reasoning = obj.get("reasoning")
    return Parsed(answer.strip().upper(), "ok", reasoning.strip() if isinstance(
        reasoning, str) else "", m.start(1), m.end(1))


def answer_format(kind: str, letters: list[str]) -> dict:
    """The ``response_format`` that holds a reply to a JSON object whose ``answer`` is one of
    ``letters`` (after a ``reasoning`` string when ``kind`` is "reasoning"); read back by
    :func:`parse_choice`."""
    props: dict = {"answer": {"type": "string", "enum": list(letters)}}
    if kind == "reasoning":
        props = {"reasoning": {"type": "string"}, **props}
    schema = {"type": "object", "properties": props, "required": list(props),
              "additionalProperties": False}
    return {"type": "json_schema",
            "json_schema": {"name": kind, "schema": schema, "strict": True}}


def parse_choice(text: str | None, letters: list[str]) -> Parsed:
    """Option letter from a structured-output JSON reply, else from the last ``Answer: X``
    (or a bare letter reply) within ``letters``."""
    text = text or ""
    allowed = {x.upper() for x in letters}
    if text.lstrip().startswith("{") and (found := _json_choice(text, allowed)) is not None:
        return found
    for m in reversed(list(_MC.finditer(text))):
        letter = m.group(1).upper()
        if letter in allowed:
            line_start = text.rfind("\n", 0, m.start()) + 1
            return Parsed(letter, "ok", text[:line_start].strip(), m.start(1), m.end(1))
    m = _BARE.match(text)
    if m and m.group(1).upper() in allowed:
        return Parsed(m.group(1).upper(), "ok", "", m.start(1), m.end(1))
    return _unparsed(text)


def parse_free(text: str | None) -> Parsed:
    """Short answer from the last ``Answer: ...`` line, or a one-line reply of ≤ 20 words,
    as written (a final period is kept: a relabel replaces the dataset's response verbatim,
    and matching normalises punctuation anyway)."""
    text = text or ""
    matches = list(_FREE.finditer(text))
    if matches:
        m = matches[-1]
        value = m.group(1).strip().strip("*_`").strip()
        if value:
            start = m.start(1) + m.group(1).find(value[:1])
            return Parsed(value, "ok", text[: m.start()].strip(), start, start + len(value))
    stripped = text.strip()
    one_line = stripped and "\n" not in stripped and len(stripped.split()) <= 20
    if one_line and not _EMPTY_ANSWER.match(stripped):
        start = text.find(stripped)
        return Parsed(stripped, "ok", "", start, start + len(stripped))
    return _unparsed(text)


_MARKER = re.compile(r"^[ \t>*_#-]*answer\s*\**\s*[:：]\**[ \t]*", re.IGNORECASE | re.MULTILINE)


def parse_long(text: str | None) -> Parsed:
    """A complete (long-form) response: everything after the last line that starts with
    ``Answer:`` (the response may span lines), or the whole reply when there is none."""
    text = text or ""
    marks = list(_MARKER.finditer(text))
    start = marks[-1].end() if marks else 0
    body = text[start:]
    value = body.strip()
    if not value or _EMPTY_ANSWER.match(value):
        return _unparsed(text)
    start += len(body) - len(body.lstrip())
    return Parsed(value, "ok", text[: marks[-1].start()].strip() if marks else "", start,
                  start + len(value))


def parse_answer(text: str | None, letters: list[str], long_form: bool = False) -> Parsed:
    """Multiple choice when ``letters`` is non-empty, else a long-form response or a short
    free-text answer."""
    if _TEST_BUG:  # tests only: a bug inside robustft must end with a traceback, exit 1
        raise KeyError(f"{TEST_BUG_ENV} is set: the parser raises (a planted bug)")
    if letters:
        return parse_choice(text, letters)
    return parse_long(text) if long_form else parse_free(text)


UNCHANGED = "UNCHANGED"  # a correction's reply when nothing in the response is wrong
_UNCHANGED = re.compile(r"^[\W_]*unchanged[\W_]*$", re.IGNORECASE)


def parse_correction(text: str | None, original: str) -> Parsed:
    """A minimal correction of ``original``: the complete corrected response after the last
    ``Answer:`` line (:func:`parse_long`), or ``original`` itself when the reply says
    ``UNCHANGED`` (start/end then mark the word UNCHANGED)."""
    p = parse_long(text)
    if p.answer is not None and _UNCHANGED.match(p.answer):
        return Parsed(original, "ok", p.reasoning, p.start, p.end)
    return p
