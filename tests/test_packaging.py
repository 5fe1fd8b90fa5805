"""The wheel installs one top-level package, ``robustft``, beside which the OpenAI Agents SDK's
own ``agents`` installs cleanly; the import rules of the lint step fail on a violation."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AGENTS_SDK = "openai-agents==0.24.0"  # installs a top-level 'agents' package


def _pip(python: Path | str, *args: str, cwd: Path | None = None) -> None:
    proc = subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True,
                          cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _pip(sys.executable, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
         str(ROOT))
    (path,) = out.glob("robustft-*.whl")
    return path


def test_wheel_holds_robustft_only_and_every_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"robustft", "robustft-0.1.0.dist-info"}
    expected = {f"robustft/{p.relative_to(ROOT / 'robustft').as_posix()}"
                for p in (ROOT / "robustft").rglob("*.py")}
    for folder in ("agents", "graph"):
        expected |= {f"robustft/{folder}/{p.name}" for p in (ROOT / folder).glob("*.py")}
    expected |= {f"robustft/prompts/{p.relative_to(ROOT / 'prompts').as_posix()}"
                 for p in (ROOT / "prompts").rglob("*.yaml")}
    expected |= {"robustft/viewer/web/index.html", "robustft/demo/demo_capitals.jsonl"}
    assert expected <= set(names), sorted(expected - set(names))
    assert not [n for n in names if n.startswith(("robustft/eval", "robustft/tests"))]


def test_installs_beside_the_openai_agents_sdk(wheel, tmp_path):
    """A fresh virtual environment that sees the test environment's packages (a .pth line,
    so only the two wheels are new): the SDK owns ``agents``, we own ``robustft.agents``, and
    the installed command finds its prompts as package data."""
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    py = env / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    # our dependencies, from the test environment (its editable robustft stays out: a path
    # added by a .pth line does not run that directory's own .pth files)
    (Path(site.stdout.strip()) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _pip(py, "install", "-q", "--no-deps", str(wheel), AGENTS_SDK, cwd=tmp_path)
    check = r"""
import importlib.metadata as md, importlib.util, pathlib
sdk = md.distribution("openai-agents")
spec = importlib.util.find_spec("agents")
assert pathlib.Path(spec.origin).resolve() == pathlib.Path(
    sdk.locate_file("agents/__init__.py")).resolve(), spec.origin
import robustft.agents.base, robustft.graph.runner, robustft.prompts
ours = pathlib.Path(md.distribution("robustft").locate_file("robustft")).resolve()
for m in (robustft.agents.base, robustft.graph.runner, robustft.prompts):
    assert pathlib.Path(m.__file__).resolve().is_relative_to(ours), m.__file__
print("ok", spec.origin)
"""
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(py), "-c", check], capture_output=True, text=True,
                          cwd=tmp_path, env=clean_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exe = env / "bin" / "robustft"
    for args, expect in ((["--help"], "curate"), (["prompts", "check"], "prompts valid")):
        proc = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=tmp_path,
                              env={**clean_env, "COLUMNS": "200"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert expect in proc.stdout


def _lint(tree: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(lint), str(ROOT / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=tree)


@pytest.fixture(scope="module")
def installed_tree(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    _pip(sys.executable, "install", "-q", "--no-deps", "--no-build-isolation", "--no-compile",
         "--target", str(tree), str(ROOT))
    return tree


@pytest.mark.parametrize("module, line, broken", [
    ("robustft/store/runstore.py", "import langgraph", "LangGraph only in robustft.graph"),
    ("robustft/methods/parsing.py", "from robustft.graph import runner", "Layers"),
    ("robustft/pipeline/contract.py", "from robustft.pipeline import setup",
     "No import cycles"),
])
def test_import_rules_fail_on_a_violation(installed_tree, tmp_path, module, line, broken):
    assert _lint(installed_tree).returncode == 0, _lint(installed_tree).stdout[-3000:]
    tree = tmp_path / "tree"
    shutil.copytree(installed_tree / "robustft", tree / "robustft")
    path = tree / module
    path.write_text(path.read_text() + f"\n\ndef _violation():\n    {line}\n")
    proc = _lint(tree)
    assert proc.returncode != 0
    assert f"{broken}" in proc.stdout and "BROKEN" in proc.stdout, proc.stdout[-3000:]
