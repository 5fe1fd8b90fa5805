"""The documentation: the configuration reference (rendered at build time by
docs/hooks/reference.py) lists every field of every config section with its type, default and
description; the README stays a README (≤ 300 lines, the two commands true)."""

from __future__ import annotations

import html
import importlib.util
import typing
from pathlib import Path

from pydantic import BaseModel

from robustft.config import Config

ROOT = Path(__file__).resolve().parent.parent


def _hook():
    spec = importlib.util.spec_from_file_location("docs_reference_hook",
                                                  ROOT / "docs" / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fields(model: type[BaseModel], prefix: str = ""):
    """(dotted name, field) of every leaf field under ``model``, walked independently of the
    hook: sub-models and mappings of sub-models are sections."""
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _fields(ann, dotted + ".")
        elif typing.get_origin(ann) is dict and issubclass(typing.get_args(ann)[1], BaseModel):
            key = {"roles": "<role>", "prices": "<model>"}[name]
            yield from _fields(typing.get_args(ann)[1], f"{dotted}.{key}.")
        else:
            yield dotted, field


def test_config_reference_lists_every_field_with_its_description():
    page = _hook().render()
    rows = {line.split("`")[1]: line for line in page.splitlines()
            if line.startswith("| <a id=")}
    fields = dict(_fields(Config))
    assert len(fields) > 80 and set(rows) == set(fields)
    for dotted, field in fields.items():
        assert field.description, f"{dotted} has no description in robustft/config.py"
        cell = html.escape(field.description, quote=False).replace("|", "\\|")
        assert cell in rows[dotted], dotted
    assert "`call_budget`" in page and "`roles.<role>.max_tokens`" in page
    assert "| `reasoning` | 0.0 | 768 | 5 |" in page  # each role's own defaults


def test_the_hook_replaces_its_marker_on_the_config_page():
    hook, text = _hook(), (ROOT / "docs" / "reference" / "config.md").read_text()
    assert hook.MARKER in text
    out = hook.on_page_markdown(text, page=None, config=None, files=None)
    assert hook.MARKER not in out and "## `endpoint`" in out


def test_readme_is_short_and_its_two_commands_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"./{script}" in readme and (ROOT / script).is_file()


def test_cli_reference_lists_every_command_and_visible_option():
    import typer

    from robustft.cli.main import app

    page = _hook().render_cli()
    sections = {}  # command path -> its section of the page
    for part in ("\n" + page).split("\n#")[1:]:
        title, _, body = part.lstrip("#").partition("\n")
        sections[title.strip(" `")] = body

    def walk(cmd, path, parent):
        ctx = cmd.context_class(cmd, info_name=path.split()[-1], parent=parent)
        body = sections[path]
        for param in cmd.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:  # hidden (the deprecated budget names): not documented
                assert not any(f"| `{flag}" in body for flag in param.opts), param.opts
            else:
                assert f"| `{record[0]}` |" in body, (path, record[0])
        for name in getattr(cmd, "list_commands", lambda _: [])(ctx):
            walk(cmd.get_command(ctx, name), f"{path} {name}", ctx)

    walk(typer.main.get_command(app), "robustft", None)
    assert {"robustft curate", "robustft prompts check"} <= set(sections)
    curate = sections["robustft curate"]
    assert "--token-budget" in curate and "--max-tokens" not in curate
