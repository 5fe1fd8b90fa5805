"""Prompt files: load, validate, render strictly, override by name."""

from pathlib import Path

import pytest
from jinja2 import UndefinedError

from robustft.llm.prompt_files import PromptError, builtin_dir, load_prompts
from robustft.schemas import Sample

SAMPLE = Sample(id="x", row=1, source="t:1", question="Q?", options=["yes", "no"], label="A")


def test_builtins_load_and_render():
    prompts = load_prompts()
    assert {"direct", "reasoning", "reflection", "context", "reviewer", "sft"} <= set(prompts)
    msgs = prompts["direct"].render(**SAMPLE.prompt_vars())
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "A. yes" in msgs[1]["content"] and "one of A, B" in msgs[0]["content"]
    assert all(len(p.hash) == 16 for p in prompts.values())


def test_missing_variable_raises():
    with pytest.raises(UndefinedError):
        load_prompts()["reviewer"].render(**SAMPLE.prompt_vars())


def test_sample_text_with_template_syntax_is_rendered_literally():
    evil = SAMPLE.model_copy(update={"question": "{{ 7*7 }} {% for x in range(3) %}X{% endfor %}"
                                                " {{ ''.__class__.__mro__ }}"})
    text = load_prompts()["direct"].render(**evil.prompt_vars())[1]["content"]
    assert "{{ 7*7 }}" in text and "49" not in text and "XXX" not in text


def test_override_replaces_by_name(tmp_path: Path):
    src = (builtin_dir() / "direct.yaml").read_text()
    (tmp_path / "direct.yaml").write_text(src.replace("You are an expert", "You are PIRATE"))
    prompts = load_prompts(tmp_path)
    assert "PIRATE" in prompts["direct"].render(**SAMPLE.prompt_vars())[0]["content"]
    assert prompts["direct"].hash != load_prompts()["direct"].hash
    assert prompts["reasoning"].path.parent == builtin_dir()


@pytest.mark.parametrize("content,message", [
    ("user: '{{ question }'\n", "syntax error"),
    ("variables: {question: q}\nuser: '{{ nope }}'\n", "undeclared variables ['nope']"),
    ("variables: {question: q, secret: s}\nuser: '{{ question }}{{ secret }}'\n",
     "does not provide: ['secret']"),
    ("just a string\n", "expected a mapping"),
    ("user: [1, 2]\n", "must be a string"),
])
def test_bad_override_names_the_file(tmp_path: Path, content, message):
    bad = tmp_path / "direct.yaml"
    bad.write_text(content)
    with pytest.raises(PromptError) as e:
        load_prompts(tmp_path)
    assert str(bad) in str(e.value) and message in str(e.value)


def test_unknown_override_name_and_missing_dir(tmp_path: Path):
    (tmp_path / "directt.yaml").write_text("user: hi\n")
    with pytest.raises(PromptError, match="no built-in prompt named 'directt'"):
        load_prompts(tmp_path)
    with pytest.raises(PromptError, match="does not exist"):
        load_prompts(tmp_path / "nope")
