"""Prompt files: YAML holding Jinja2 ``system``/``user`` templates, validated at load.

Each file ``prompts/NAME.yaml`` has ``description``, ``variables`` (name → meaning), ``system``,
``user`` and optionally ``stop`` (stop sequences: how this prompt's completion ends) and
``structured`` (``answer`` or ``reasoning``: for a multiple-choice sample the reply may be
constrained to a JSON object with the answer letter, after the reasoning for ``reasoning``).
Templates render with StrictUndefined in a sandboxed environment, so a sample's own text
containing ``{{ ... }}`` is data, never code. A user's override directory replaces any built-in
prompt by file name; an override may only use the variables the built-in declares.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from robustft.errors import PromptError as PromptError  # its home is the errors family

_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False,
                            autoescape=False)
_PARTS = ("system", "user")


@dataclass(frozen=True)
class Prompt:
    name: str
    path: Path
    description: str
    variables: dict[str, str]
    system: str
    user: str
    hash: str
    stop: tuple[str, ...] = ()
    structured: str | None = None  # "answer" | "reasoning": the JSON reply it may be held to
    compiled: tuple = field(default=(), compare=False, repr=False)  # templates, compiled once

    def render(self, **values: object) -> list[dict[str, str]]:
        """Chat messages; a missing variable raises (StrictUndefined)."""
        msgs = []
        for part, template in zip(_PARTS, self.compiled, strict=True):
            text = template.render(**values).strip()
            if text:
                msgs.append({"role": part, "content": text})
        return msgs


def builtin_dir() -> Path:
    return Path(str(files("robustft.prompts")))


def load_prompt(path: Path, allowed: set[str] | None = None) -> Prompt:
    """Parse and validate one prompt file (syntax, declared variables, required keys)."""
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as e:
        raise PromptError(f"{path}: cannot read prompt: {e}") from e
    if not isinstance(data, dict) or "user" not in data:
        raise PromptError(f"{path}: expected a mapping with at least a 'user' template")
    declared = data.get("variables") or {}
    if not isinstance(declared, dict):
        raise PromptError(f"{path}: 'variables' must map names to descriptions")
    used: set[str] = set()
    for part in _PARTS:
        src = data.get(part) or ""
        if not isinstance(src, str):
            raise PromptError(f"{path}: '{part}' must be a string")
        try:
            used |= meta.find_undeclared_variables(_ENV.parse(src))
        except TemplateSyntaxError as e:
            raise PromptError(f"{path}:{e.lineno}: template syntax error in '{part}': "
                              f"{e.message}") from e
    undeclared = used - set(declared)
    if undeclared:
        raise PromptError(f"{path}: uses undeclared variables {sorted(undeclared)}")
    if allowed is not None and set(declared) - allowed:
        raise PromptError(f"{path}: declares variables the agent does not provide: "
                          f"{sorted(set(declared) - allowed)}; available: {sorted(allowed)}")
    stop = data.get("stop") or []
    if not isinstance(stop, list) or not all(isinstance(x, str) and x for x in stop):
        raise PromptError(f"{path}: 'stop' must be a list of non-empty strings")
    structured = data.get("structured")
    if structured not in (None, "answer", "reasoning"):
        raise PromptError(f"{path}: 'structured' must be 'answer' or 'reasoning', "
                          f"not {structured!r}")
    return Prompt(
        name=path.stem, path=path, description=str(data.get("description", "")).strip(),
        variables={str(k): str(v) for k, v in declared.items()},
        system=data.get("system") or "", user=data["user"],
        hash=hashlib.sha256(text.encode()).hexdigest()[:16], stop=tuple(stop),
        structured=structured,
        compiled=tuple(_ENV.from_string(data.get(part) or "") for part in _PARTS))


def load_prompts(override_dir: str | Path | None = None) -> dict[str, Prompt]:
    """Built-in prompts, with any file of the same name in ``override_dir`` replacing them."""
    prompts = {p.stem: load_prompt(p) for p in sorted(builtin_dir().glob("*.yaml"))}
    if override_dir is not None:
        d = Path(override_dir)
        if not d.is_dir():
            raise PromptError(f"{d}: prompt override directory does not exist")
        for p in sorted(d.glob("*.yaml")):
            if p.stem not in prompts:
                raise PromptError(f"{p}: no built-in prompt named '{p.stem}'; "
                                  f"known: {sorted(prompts)}")
            prompts[p.stem] = load_prompt(p, allowed=set(prompts[p.stem].variables))
    return prompts
