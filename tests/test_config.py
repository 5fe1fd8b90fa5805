"""Config tree: YAML loading, role defaults merged, clear errors naming the file."""

from pathlib import Path

import pytest

from robustft.config import Config, ConfigError, dump_config, load_config, resolved_endpoint
from robustft.llm.tokens import estimate_messages, estimate_tokens, tokenizer_name


def test_yaml_roles_merge_onto_role_defaults(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("endpoint: {base_url: 'http://h/v1', model: big}\n"
                 "roles: {direct: {model: small, temperature: 0.5}}\n"
                 "selection: {beta: 0.4}\n")
    cfg = load_config(p)
    assert cfg.role("direct").model == "small" and cfg.role("direct").max_tokens == 64
    assert cfg.role("reviewer").top_logprobs == 10 and cfg.selection.beta == 0.4
    assert resolved_endpoint(cfg, "direct") == (("http://h/v1",), "small", "OPENAI_API_KEY")
    assert resolved_endpoint(cfg, "reviewer")[1] == "big"
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(cfg))
    assert load_config(again).model_dump() == cfg.model_dump()


@pytest.mark.parametrize("text,message", [
    ("roles: {jury: {}}\n", "roles must be a mapping with keys"),
    ("selection: {beta: 2}\n", "beta"),
    ("concurency: 3\n", "concurency"),
    ("- a list\n", "top level must be a mapping"),
])
def test_bad_config_names_file_and_field(tmp_path: Path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and message in str(e.value)


def test_every_field_is_described():
    def walk(model):
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name} has no description"
            ann = f.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)
    walk(Config)


def test_token_estimates_work_offline():
    assert tokenizer_name() in ("tiktoken:o200k_base", "chars/4")
    assert 2 <= estimate_tokens("hello world, how are you") <= 8
    assert estimate_messages([{"role": "user", "content": "hi"}]) >= 5
