"""One error family: every documented user error exits with its documented code and a message
(no traceback); anything else is a bug and exits 1 with its traceback."""

from __future__ import annotations

import inspect
import re

import pytest

import robustft.errors as errors
from eval.scripted_server import parity
from robustft.config import ConfigError
from robustft.data.files import InputFileError
from robustft.errors import RobustftError
from robustft.llm.budget import BudgetExceeded
from robustft.llm.prompt_files import PromptError
from robustft.methods.parsing import TEST_BUG_ENV
from robustft.serving.servers import ServeError
from robustft.training.train import TrainError

from .conftest import write_jsonl
from .test_cli_e2e import run_cli
from .test_reliability import parity_rows


def test_every_error_class_is_in_the_family_with_a_documented_code():
    documented = {int(c) for c in re.findall(r"^(\d+) ", errors.__doc__, re.MULTILINE)}
    family = [c for _, c in inspect.getmembers(errors, inspect.isclass)
              if issubclass(c, RobustftError)]
    assert len(family) >= 14 and {c.exit_code for c in family} <= documented
    for old in (ConfigError, InputFileError, PromptError, ServeError, TrainError,
                BudgetExceeded):  # still importable from where they were
        assert issubclass(old, RobustftError)
    assert issubclass(ConfigError, ValueError)  # callers catching ValueError keep working


@pytest.fixture
def done_run(tmp_path, serve):
    """(input, a finished run directory, the server) for 6 parity rows."""
    srv = serve(parity)
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(6))
    res = run_cli("curate", "-i", str(inp), "-o", str(tmp_path / "run"), "--base-url",
                  srv.base_url, "--model", "m")
    assert res.returncode == 0, res.stderr
    return inp, tmp_path / "run", srv


def _expect(res, code: int, *phrases: str) -> None:
    message = " ".join(res.stderr.split())
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr and "error:" in message
    for p in phrases:
        assert p in message, (p, message)


def test_documented_user_errors_exit_with_their_code_and_no_traceback(tmp_path, done_run):
    inp, run, srv = done_run
    url = ["--base-url", srv.base_url, "--model", "m"]
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("selection: {beta: 2}\n")
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "direct.yaml").write_text("user: '{{ nope }}'\n")
    other = write_jsonl(tmp_path / "other.jsonl", parity_rows(7))
    cases = [
        (["curate", "-i", str(inp), "-o", str(tmp_path / "x"), "-c", str(bad_config), *url],
         2, [f"{bad_config}:", "beta"]),
        (["curate", "-i", str(inp), "-o", str(tmp_path / "x"), "--prompts", str(prompts),
          *url], 2, ["direct.yaml", "undeclared"]),
        (["curate", "-i", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "x"), *url],
         2, ["input file not found"]),
        (["curate", "-i", str(other), "-o", str(run), *url], 2, ["a different input"]),
        (["curate", "-i", str(inp), "-o", str(tmp_path / "x"), "--method", "nope", *url],
         2, ["unknown method"]),
        (["summary", str(tmp_path / "empty")], 2, ["not a run directory"]),
        (["trace", str(run), "nope"], 2, ["no sample with id 'nope'"]),
        (["export", str(run), "-o", str(tmp_path / "out.csv")], 2, ["the input's format"]),
        (["curate", "-i", str(inp), "-o", str(tmp_path / "b"), "--call-budget", "3", *url],
         4, ["stopped: call budget reached", "rerun the same command"]),
    ]
    (tmp_path / "empty").mkdir()
    for args, code, phrases in cases:
        _expect(run_cli(*args), code, *phrases)


def test_a_bug_in_a_sample_exits_1_with_its_traceback(tmp_path, serve):
    srv = serve(parity)
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(4))
    res = run_cli("curate", "-i", str(inp), "-o", str(tmp_path / "run"), "--base-url",
                  srv.base_url, "--model", "m", env={TEST_BUG_ENV: "parser"})
    assert res.returncode == 1
    assert "Traceback" in res.stderr and "KeyError" in res.stderr
    assert "failed with an internal error" in res.stderr and "not in your data" in res.stderr
    reasons = (tmp_path / "run" / "decisions.csv").read_text()
    assert reasons.count("internal: KeyError") == 4  # every row says why, none is lost


def test_a_bug_outside_a_run_exits_1_with_its_traceback(tmp_path, serve):
    srv = serve(parity)
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(4))
    res = run_cli("evaluate", "--model", "m", "--data", str(inp), "--base-url",
                  srv.base_url, "-o", str(tmp_path / "eval"), env={TEST_BUG_ENV: "parser"})
    assert res.returncode == 1
    assert res.stderr.lstrip().startswith("Traceback") or "Traceback" in res.stderr
    assert "KeyError" in res.stderr and "error:" not in res.stderr
