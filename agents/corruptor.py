"""Corruptor: plants one changed fact in a long-form response (a canary, see
:mod:`robustft.methods.canaries`). The reply carries the changed response between
``<changed>`` and ``</changed>``; the text around it is ignored."""

from __future__ import annotations

import re

from robustft.agents.base import Deps, run_agent
from robustft.methods.matching import exact_match
from robustft.methods.parsing import Parsed
from robustft.schemas import AgentCall, Sample

OPEN, CLOSE = "<changed>", "</changed>"
_OPEN = re.compile(re.escape(OPEN), re.IGNORECASE)
_CLOSE = re.compile(re.escape(CLOSE), re.IGNORECASE)


def parse_corruption(text: str | None, original: str) -> Parsed:
    """The changed response: the text after the last ``<changed>`` (from the start when the
    reply has none: a base-model prompt opens the tag itself) up to the next ``</changed>``.
    Unparsed (never raises): no closing tag, nothing between the tags, or a response equal
    to ``original`` (nothing was changed)."""
    text = text or ""
    opens = list(_OPEN.finditer(text))
    start = opens[-1].end() if opens else 0
    close = _CLOSE.search(text, start)
    if close is None:
        return Parsed(None, "unparsed", text.strip())
    body = text[start:close.start()]
    value = body.strip()
    if not value or exact_match(value, original, False):
        return Parsed(None, "unparsed", text.strip())
    at = start + len(body) - len(body.lstrip())
    return Parsed(value, "ok", text[:opens[-1].start() if opens else 0].strip(), at,
                  at + len(value))


async def corrupt(deps: Deps, sample: Sample) -> AgentCall:
    """The sample's response with one fact changed so that it is wrong (``answer``), or an
    unparsed call when the reply has no changed response."""
    return await run_agent(deps, "corruptor", "corrupt", sample,
                           parser=lambda t: parse_corruption(t, sample.label),
                           response=sample.label)
