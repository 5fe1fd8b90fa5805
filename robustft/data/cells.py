"""Decoding one cell of an input row: option lists in their encodings, multiple-choice
answers in theirs, and chat turns (TRL messages or ShareGPT from/value). Every function
raises ValueError naming what is wrong, or returns None where the caller tries readings."""

from __future__ import annotations

import ast
import json
from typing import Any

from robustft.schemas import LETTERS

SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant",
                  "bard": "assistant"}


def cell(row: dict[str, Any], col: str | None) -> Any:
    if col is None or col not in row or row[col] is None:
        raise ValueError(f"missing column '{col}'")
    return row[col]


def text_cell(row: dict[str, Any], col: str) -> str:
    value = cell(row, col)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"column '{col}' must be text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError(f"column '{col}' is empty")
    return text


def options_kind(value: Any) -> str | None:
    """How a cell writes its options: dict, list, json or python (None: no list)."""
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return "list"
    if isinstance(value, str):
        s = value.strip()
        try:
            if isinstance(json.loads(s), list):
                return "json"
        except json.JSONDecodeError:
            pass
        try:
            if isinstance(ast.literal_eval(s), (list, tuple)):
                return "python"
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    return None


def parse_options(value: Any, encoding: str | None) -> tuple[list[str], list[str] | None]:
    """(option texts, option labels or None) of one row."""
    labels = None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            if encoding != "python":
                raise ValueError(f"options are not a JSON list: {e.msg}") from e
            try:
                value = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError) as e2:
                raise ValueError("options are not a Python-literal list") from e2
    if isinstance(value, dict):
        labels = value.get("label")
        value = value.get("text")
        labels = labels.tolist() if hasattr(labels, "tolist") else labels
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise ValueError(f"options are not a list (got {type(value).__name__})")
    if not 2 <= len(value) <= len(LETTERS):
        raise ValueError(f"need 2 to {len(LETTERS)} options, got {len(value)}")
    if not all(isinstance(o, (str, int, float)) and str(o).strip() for o in value):
        raise ValueError("every option must be a non-empty string")
    if labels is not None and len(labels) != len(value):
        raise ValueError("choices 'label' and 'text' differ in length")
    return [str(o) for o in value], [str(x) for x in labels] if labels is not None else None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def decode_answer(value: Any, encoding: str, options: list[str],
            labels: list[str] | None) -> int | None:
    """The option index ``value`` means under ``encoding``, or None."""
    n = len(options)
    if encoding == "index":
        i = as_int(value)
        return i if i is not None and 0 <= i < n else None
    if not isinstance(value, str):
        return None
    if encoding == "letter":
        letter = value.strip().upper().strip("() .")
        return LETTERS.index(letter) if len(letter) == 1 and letter in LETTERS[:n] else None
    if encoding == "label":
        return labels.index(value.strip()) if labels and value.strip() in labels else None
    texts = [o.strip() for o in options]
    return texts.index(value.strip()) if value.strip() in texts else None


def expected_answer(encoding: str, options: list[str], labels: list[str] | None) -> str:
    n = len(options)
    return {"letter": f"an option letter {LETTERS[0]}-{LETTERS[n - 1]}",
            "index": f"a 0-based option index 0-{n - 1}",
            "label": f"one of the choice labels {labels}",
            "text": f"one of the options {options}"}[encoding]


def turn_role(m: Any, fmt: str) -> str:
    if not isinstance(m, dict):
        raise ValueError(f"a turn must be an object, got {type(m).__name__}")
    if fmt == "sharegpt" or ("from" in m and "role" not in m):
        who = str(m.get("from", "")).lower()
        if who not in SHAREGPT_ROLES:
            raise ValueError(f"unknown speaker {m.get('from')!r} (from: system/human/gpt)")
        return SHAREGPT_ROLES[who]
    role = m.get("role")
    if role not in ("system", "user", "assistant", "developer", "tool"):
        raise ValueError(f"unknown role {role!r}")
    return "system" if role == "developer" else role


def parse_turns(value: Any, column: str) -> list[dict[str, str]]:
    """Turns as {role, content} from TRL messages or ShareGPT from/value lists."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"'{column}' is not a list of turns: {e.msg}") from e
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise ValueError(f"'{column}' must be a non-empty list of turns")
    out = []
    for m in value:
        role = turn_role(m, "sharegpt" if "from" in m and "role" not in m else "messages")
        content = m.get("content", m.get("value"))
        if not isinstance(content, str):
            raise ValueError(f"'{column}': a turn's content must be text")
        out.append({"role": role, "content": content})
    return out
