"""MkDocs hook: the references, rendered at build time so they can never disagree with the
code. The configuration reference comes from ``robustft.config.Config`` (every field of every
section with its type, default and description; docs/reference/config.md holds the marker),
the CLI reference from the click command behind the typer app, ``typer.main.get_command(app)``,
with the help records ``--help`` prints (docs/reference/cli.md). tests/test_docs.py checks
both."""

from __future__ import annotations

import html
import inspect
import json
import types
import typing
from typing import Any

import annotated_types as at
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

MARKER = "<!-- config-reference -->"
CLI_MARKER = "<!-- cli-reference -->"
KEY_NAMES = {"roles": "role", "prices": "model"}  # what a mapping section's keys are


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, render())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, render_cli())
    return markdown


def render() -> str:
    """The reference as markdown: the top-level fields, then one section per sub-model."""
    from robustft.config import Config, _default_roles

    top = [(name, f) for name, f in Config.model_fields.items() if _section(f) is None]
    out = ["## Top level", "", "Fields at the top of the file.", "", *_table("", top), ""]
    for name, field in Config.model_fields.items():
        sub = _section(field)
        if sub is None:
            continue
        model, keyed = sub
        prefix = f"{name}.<{KEY_NAMES.get(name, 'key')}>" if keyed else name
        out += [f"## `{prefix}`", "", _esc(field.description or ""), ""]
        if name == "roles":
            out += _role_defaults(_default_roles())
        out += [*_table(prefix, list(model.model_fields.items())), ""]
    return "\n".join(out)


def _section(field: Any) -> tuple[type[BaseModel], bool] | None:
    """(model, keyed) when a Config field is a section: a model, or a mapping of models."""
    ann = field.annotation
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    if typing.get_origin(ann) is dict:
        value = typing.get_args(ann)[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value, True
    return None


def _table(prefix: str, fields: list[tuple[str, Any]]) -> list[str]:
    rows = ["| field, type, default | description |", "| --- | --- |"]
    for name, f in fields:
        dotted = f"{prefix}.{name}" if prefix else name
        anchor = dotted.replace("<", "").replace(">", "")
        rows.append(f"| <a id=\"{anchor}\"></a>`{dotted}`<br>{_esc(_type(f))}<br>default: "
                    f"`{_default(f)}` | {_esc(f.description or '')} |")
    return rows


def _role_defaults(roles: dict[str, Any]) -> list[str]:
    rows = ["Each role's defaults (a role missing from the file keeps them):", "",
            "| role | temperature | max_tokens | top_logprobs |", "| --- | --- | --- | --- |"]
    rows += [f"| `{name}` | {r.temperature} | {r.max_tokens} | {r.top_logprobs} |"
             for name, r in roles.items()]
    return [*rows, ""]


def _type(field: Any) -> str:
    text = _type_name(field.annotation)
    bounds = {at.Gt: (">", "gt"), at.Ge: ("≥", "ge"), at.Lt: ("<", "lt"), at.Le: ("≤", "le")}
    for m in field.metadata:
        for kind, (sign, attr) in bounds.items():
            if isinstance(m, kind):
                text += f", {sign} {getattr(m, attr)}"
        if isinstance(m, at.MinLen):
            text += f", at least {m.min_length} item(s)"
    return text


def _type_name(ann: Any) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "section"
    return getattr(ann, "__name__", str(ann))


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "see below" if isinstance(value, (BaseModel, dict)) and value else json.dumps(
            value)
    if field.default is PydanticUndefined:
        return "required"
    return json.dumps(field.default, ensure_ascii=False)


def _esc(text: str) -> str:
    """Safe in a markdown table cell: HTML escaped (``<role>`` is text), pipes escaped."""
    return html.escape(text, quote=False).replace("|", "\\|")


def render_cli() -> str:
    """Every command and subcommand: its help, usage, and the options and arguments as
    ``--help`` lists them (hidden ones, such as deprecated names, stay hidden)."""
    import typer

    from robustft.cli.main import app

    return "\n".join(_command("robustft", typer.main.get_command(app), None, 2))


def _command(path: str, cmd: Any, parent: Any, level: int) -> list[str]:
    ctx = cmd.context_class(cmd, info_name=path.split()[-1], parent=parent)
    out = [f"{'#' * level} `{path}`", "", _esc(inspect.cleandoc(cmd.help or "")), "",
           "```text", f"{path} {' '.join(cmd.collect_usage_pieces(ctx))}", "```", ""]
    records = [r for p in cmd.get_params(ctx) if (r := p.get_help_record(ctx))]
    if records:
        out += ["| option or argument | description |", "| --- | --- |"]
        out += [f"| `{name}` | {_esc(text)} |" for name, text in records]
        out.append("")
    names = cmd.list_commands(ctx) if hasattr(cmd, "list_commands") else []
    subs = [(n, cmd.get_command(ctx, n)) for n in names]
    if subs:
        out += ["| command | what it does |", "| --- | --- |"]
        out += [f"| [`{path} {n}`](#{_slug(f'{path} {n}')}) | {_esc(c.get_short_help_str(100))} |"
                for n, c in subs]
        out.append("")
    for n, c in subs:
        out += _command(f"{path} {n}", c, ctx, level + (parent is not None))
    return out


def _slug(title: str) -> str:
    """The anchor MkDocs' toc gives a heading `title` (lower case, spaces as dashes)."""
    return title.lower().replace(" ", "-")
