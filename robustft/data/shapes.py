"""The shapes SFT datasets come in, detected from their columns and values, and the way back.

A :class:`Shape` says where the response under audit lives in a row and how it is encoded;
:meth:`Shape.extract` turns a row into (question, options, label) for the pipeline — the label
an option letter for multiple choice, the response text otherwise — and :meth:`Shape.restore`
writes a final label back into a copy of the row in the row's own encoding, leaving every other
column and field as it was.

=====================  ===========================================  =========================
format                 columns                                      response under audit
=====================  ===========================================  =========================
multiple_choice        question, options|choices, answer|answerKey  answer: letter, 0-based
                                                                    index, option text, or a
                                                                    ``choices.label`` entry
free_text              question, answer (or mapped columns)         answer
messages               messages (TRL conversational)                last assistant turn
prompt_completion      prompt, completion (text or message lists)   completion
alpaca                 instruction, input (optional), output        output
sharegpt               conversations (from/value)                   last gpt turn
=====================  ===========================================  =========================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from robustft.config import DataConfig
from robustft.data.cells import (
    as_int,
    cell,
    decode_answer,
    expected_answer,
    options_kind,
    parse_options,
    parse_turns,
    text_cell,
    turn_role,
)
from robustft.schemas import LETTERS

DETECT_ROWS = 1000  # rows read to detect the shape; later rows are validated against it


class ShapeError(ValueError):
    """The file's shape is ambiguous or unknown; the message names the column and row."""


@dataclass(frozen=True)
class Shape:
    format: str
    question_column: str = "question"
    options_column: str | None = None
    answer_column: str = "answer"
    answer_encoding: str = "text"  # MC: letter | index | text | label; otherwise: text
    options_encoding: str | None = None  # json | python | list | dict (MC only)
    conversational: bool = False  # sft.jsonl as messages; prompt/completion as message lists
    long_form: bool = False  # free text whose typical response is long: every row long-form
    # the file's text encoding (CSV, JSONL, JSON), kept for writing curated.<ext> back
    encoding: str = "utf-8"  # a Python codec, without the byte-order mark
    bom: bool = False  # the file starts with a byte-order mark
    line_end: str = "\r\n"  # CSV: the header's line ending (the csv module's default)

    @property
    def task(self) -> str:
        return "multiple_choice" if self.format == "multiple_choice" else "free_text"

    @property
    def is_mc(self) -> bool:
        return self.format == "multiple_choice"

    def describe(self) -> str:
        where = {"messages": "the last assistant turn of 'messages'",
                 "sharegpt": "the last gpt turn of 'conversations'",
                 "prompt_completion": "'completion'" + (" (message lists)"
                                                        if self.conversational else ""),
                 "alpaca": "'output' (prompt: 'instruction' + 'input')"}.get(self.format)
        if where is None and self.format == "multiple_choice":
            enc = {"letter": "an option letter", "index": "a 0-based index",
                   "text": "the option's text", "label": "an entry of choices.label"}
            where = (f"'{self.answer_column}' as {enc[self.answer_encoding]}, options in "
                     f"'{self.options_column}' ({self.options_encoding})")
        elif where is None:
            where = f"'{self.answer_column}' (prompt: '{self.question_column}')"
        kind = ", ".join(x for x in (self.task if self.task != self.format else "",
                                     "long-form responses" if self.long_form else "") if x)
        return f"{self.format}{f' ({kind})' if kind else ''}; response under audit: {where}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "task": self.task, "description": self.describe()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Shape:
        keys = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in keys})

    # ---- a row in ----------------------------------------------------------------------
    def extract(self, row: dict[str, Any]) -> tuple[str, list[str], str]:
        """(question, options, label) of one row; ValueError names what is wrong."""
        if self.format == "multiple_choice":
            question = text_cell(row, self.question_column)
            options, labels = parse_options(cell(row, self.options_column), self.options_encoding)
            return question, options, LETTERS[self._index(row, options, labels)]
        if self.format == "free_text":
            return text_cell(row, self.question_column), [], text_cell(row, self.answer_column)
        if self.format == "alpaca":
            instruction = text_cell(row, "instruction")
            extra = row.get("input")
            extra = str(extra).strip() if extra is not None else ""
            return (f"{instruction}\n\n{extra}" if extra else instruction), [], text_cell(
                row, "output")
        prompt, response = self._turns(row)
        return render_turns(prompt), [], response

    def _index(self, row: dict[str, Any], options: list[str], labels: list[str] | None) -> int:
        value = cell(row, self.answer_column)
        i = decode_answer(value, self.answer_encoding, options, labels)
        if i is None:
            raise ValueError(f"{self.answer_column} {value!r} is not "
                             + expected_answer(self.answer_encoding, options, labels))
        return i

    def _turns(self, row: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
        """(prompt messages, response) of a chat-shaped row."""
        if self.format == "prompt_completion":
            prompt, completion = cell(row, "prompt"), cell(row, "completion")
            msgs = parse_turns(prompt, "prompt") if not isinstance(prompt, str) else [
                {"role": "user", "content": prompt}]
            if isinstance(completion, str):
                response = completion
            else:
                turns = parse_turns(completion, "completion")
                if not turns or turns[-1]["role"] != "assistant":
                    raise ValueError("'completion' has no assistant turn")
                response = turns[-1]["content"]
            if not response.strip():
                raise ValueError("empty response in 'completion'")
            if not "".join(m["content"] for m in msgs).strip():
                raise ValueError("empty 'prompt'")
            return msgs, response
        column = "messages" if self.format == "messages" else "conversations"
        msgs = parse_turns(cell(row, column), column)
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None:
            raise ValueError(f"'{column}' has no assistant turn")
        if not msgs[last]["content"].strip():
            raise ValueError(f"empty response in the last assistant turn of '{column}'")
        if not any(m["role"] == "user" for m in msgs[:last]):
            raise ValueError(f"'{column}' has no user turn before the last assistant turn")
        return msgs[:last], msgs[last]["content"]

    def prompt_messages(self, row: dict[str, Any]) -> list[dict[str, str]]:
        """The conversation before the response (chat shapes), for a conversational sft.jsonl."""
        return self._turns(row)[0]

    # ---- a row out ---------------------------------------------------------------------
    def restore(self, row: dict[str, Any], label: str) -> dict[str, Any]:
        """A copy of ``row`` with the audited response replaced by ``label``, in the row's own
        encoding (an integer answer stays an integer, chat rows keep every other turn)."""
        out = dict(row)
        if self.format == "multiple_choice":
            i = LETTERS.index(label)
            old = cell(row, self.answer_column)
            options, labels = parse_options(cell(row, self.options_column), self.options_encoding)
            if self.answer_encoding == "letter":
                new: Any = label
            elif self.answer_encoding == "index":
                new = i if isinstance(old, int) else str(i)
            elif self.answer_encoding == "label":
                new = labels[i] if labels else label
            else:
                new = options[i]
            out[self.answer_column] = new
        elif self.format == "free_text":
            out[self.answer_column] = label
        elif self.format == "alpaca":
            out["output"] = label
        elif self.format == "prompt_completion":
            completion = row["completion"]
            if isinstance(completion, str):
                out["completion"] = label
            else:
                turns = [dict(m) for m in completion]
                turns[-1]["content"] = label
                out["completion"] = turns
        else:
            column = "messages" if self.format == "messages" else "conversations"
            key = "content" if self.format == "messages" else "value"
            turns = [dict(m) for m in row[column]]
            roles = [turn_role(m, self.format) for m in turns]
            last = max(i for i, r in enumerate(roles) if r == "assistant")
            turns[last][key] = label
            out[column] = turns
        return out


def render_turns(msgs: Sequence[dict[str, str]]) -> str:
    """The prompt of a chat row as one text: a lone user turn as itself, a longer
    conversation as ``Role: text`` paragraphs (system turn and earlier turns included)."""
    if len(msgs) == 1 and msgs[0]["role"] == "user":
        return msgs[0]["content"].strip()
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content'].strip()}" for m in msgs)


# ---- detection ---------------------------------------------------------------------------
def detect_shape(rows: Sequence[tuple[str, dict[str, Any]]], columns: Sequence[str] | None,
                 cfg: DataConfig) -> Shape:
    """The shape of a file from its columns and its first rows ((location, row) pairs):
    ``data.format`` forces it; otherwise the columns decide, and for multiple choice the
    answers' values decide their encoding. Raises :class:`ShapeError` when ambiguous."""
    cols = list(columns) if columns is not None else list(dict.fromkeys(
        k for _, r in rows for k in r))
    fmt = cfg.format if cfg.format != "auto" else (
        cfg.task if cfg.task != "auto" else None)
    if fmt is None:
        fmt = _format_of(cols, cfg)
    if fmt == "multiple_choice":
        return _mc_shape(rows, cols, cfg)
    if fmt == "free_text":
        missing = [c for c in (cfg.question_column, cfg.answer_column) if c not in cols]
        if missing:
            raise ShapeError(f"missing column(s) {missing}; columns are {cols} (a question/"
                             "answer file, or set data.format)")
        return Shape("free_text", cfg.question_column, None, cfg.answer_column)
    needs = {"messages": ["messages"], "prompt_completion": ["prompt", "completion"],
             "alpaca": ["instruction", "output"], "sharegpt": ["conversations"]}[fmt]
    missing = [c for c in needs if c not in cols]
    if missing:
        raise ShapeError(f"format {fmt} needs column(s) {missing}; columns are {cols}")
    conversational = fmt in ("messages", "sharegpt") or (
        fmt == "prompt_completion" and any(not isinstance(r.get("prompt"), str)
                                           for _, r in rows if r.get("prompt") is not None))
    return Shape(fmt, conversational=conversational)


def _format_of(cols: list[str], cfg: DataConfig) -> str:
    if "messages" in cols:
        return "messages"
    if "conversations" in cols:
        return "sharegpt"
    if "prompt" in cols and "completion" in cols:
        return "prompt_completion"
    if "instruction" in cols and "output" in cols:
        return "alpaca"
    if cfg.question_column in cols and (_options_column(cols, cfg) is not None):
        return "multiple_choice"
    if cfg.question_column in cols and _answer_column(cols, cfg) in cols:
        return "free_text"
    raise ShapeError(f"cannot tell the dataset's shape from its columns {cols}: expected "
                     "messages, conversations, prompt+completion, instruction+output, or "
                     f"{cfg.question_column!r} with {cfg.answer_column!r} (and options/choices "
                     "for multiple choice); map columns or set data.format in the config")


def _options_column(cols: list[str], cfg: DataConfig) -> str | None:
    for c in (cfg.options_column, "options", "choices"):
        if c in cols:
            return c
    return None


def _answer_column(cols: list[str], cfg: DataConfig) -> str:
    if cfg.answer_column in cols:
        return cfg.answer_column
    return "answerKey" if "answerKey" in cols else cfg.answer_column


def _mc_shape(rows: Sequence[tuple[str, dict[str, Any]]], cols: list[str],
              cfg: DataConfig) -> Shape:
    opt_col, ans_col = _options_column(cols, cfg), _answer_column(cols, cfg)
    missing = [c for c, ok in ((cfg.question_column, cfg.question_column in cols),
                               (opt_col or cfg.options_column, opt_col is not None),
                               (ans_col, ans_col in cols)) if not ok]
    if missing:
        raise ShapeError(f"missing column(s) {missing}; columns are {cols}")
    # options: how they are written (the first row whose options parse decides)
    opt_enc = None
    parsed: list[tuple[str, Any, list[str], list[str] | None]] = []
    for loc, r in rows:
        value = r.get(opt_col)
        enc = options_kind(value)
        if enc is None:
            continue
        opt_enc = opt_enc or enc
        try:
            options, labels = parse_options(value, enc)
        except ValueError:
            continue
        parsed.append((loc, r.get(ans_col), options, labels))
    if opt_enc is None:
        raise ShapeError(f"column '{opt_col}': no row holds a list of options (a JSON list, a "
                         "Python-literal list, a list, or a dict with 'text')")
    if cfg.answer_encoding != "auto":
        return Shape("multiple_choice", cfg.question_column, opt_col, ans_col,
                     cfg.answer_encoding, opt_enc)
    fits = {enc: [decode_answer(a, enc, o, lab) for _, a, o, lab in parsed]
            for enc in ("letter", "index", "text", "label")}
    full = [enc for enc, got in fits.items() if parsed and all(i is not None for i in got)]
    if "label" in full:  # choices that carry their own labels: answers name those labels
        full = ["label"]
    if len(full) > 1:  # several readings fit every row: they must mean the same
        for n, (loc, a, _, _) in enumerate(parsed):
            meanings = {fits[enc][n] for enc in full}
            if len(meanings) > 1:
                raise ShapeError(
                    f"{loc}: column '{ans_col}' value {a!r} is ambiguous: it reads as "
                    + " or ".join(f"{enc} (option {LETTERS[fits[enc][n]]})" for enc in full)
                    + "; set data.answer_encoding")
        enc = full[0]
    elif full:
        enc = full[0]
    else:
        ints = [(loc, a, o) for loc, a, o, _ in parsed if as_int(a) is not None]
        zero_based = any(as_int(a) == 0 for _, a, _ in ints)
        if ints and len(ints) == len(parsed) and not zero_based:
            # no answer is 0 and some equal the option count: 1-based? never guess
            loc, a, o = next(x for x in ints if not 0 <= as_int(x[1]) < len(x[2]))
            raise ShapeError(f"{loc}: column '{ans_col}' holds integer answers, but {a!r} is "
                             f"out of range for {len(o)} options (0-based indices 0-"
                             f"{len(o) - 1}); 1-based answers or a wrong options column? "
                             "Fix the file or set data.answer_encoding")
        counts = {e: sum(i is not None for i in got) for e, got in fits.items()}
        enc = max(counts, key=lambda e: counts[e])
        if counts[enc] == 0:
            loc, a, o, _ = parsed[0]
            raise ShapeError(f"{loc}: column '{ans_col}' value {a!r} is neither an option "
                             f"letter, a 0-based index, nor one of the options {o}")
    return Shape("multiple_choice", cfg.question_column, opt_col, ans_col, enc, opt_enc)
