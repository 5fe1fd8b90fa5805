"""Token estimates that work offline.

tiktoken downloads its encodings on first use; offline, ``get_encoding`` raises. We try the
cached ``o200k_base`` encoding once and otherwise fall back to ~4 characters per token. Used
only where the endpoint reports no ``usage`` (served models count their own tokens exactly).
"""

from __future__ import annotations

import functools
import math


@functools.cache
def _encoding():
    try:
        import tiktoken

        return tiktoken.get_encoding("o200k_base")
    except Exception:  # offline, no cache, or a broken install: use the heuristic
        return None


def estimate_tokens(text: str) -> int:
    """Approximate token count of ``text`` (exact for OpenAI models when tiktoken is cached)."""
    enc = _encoding()
    if enc is not None:
        return len(enc.encode(text, disallowed_special=()))
    return math.ceil(len(text) / 4)


def estimate_messages(messages: list[dict[str, str]]) -> int:
    """Approximate prompt tokens of chat messages (+4 per message for the chat framing)."""
    return sum(estimate_tokens(m.get("content", "")) + 4 for m in messages)


def tokenizer_name() -> str:
    return "tiktoken:o200k_base" if _encoding() is not None else "chars/4"
