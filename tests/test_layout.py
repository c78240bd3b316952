"""The package's shape: data flows one way, no import cycles, one name for one thing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest
import typer.main

import queryfit
from queryfit.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_each_stage_imports_only_earlier_stages():
    """The layers contract in pyproject.toml ([tool.importlinter]), checked by import-linter."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_no_import_cycles_anywhere_in_the_package():
    """Not even inside one stage, and not even through an import inside a function."""
    graph = grimp.build_graph("queryfit")
    cycles = sorted(
        {
            tuple(sorted((module, imported)))
            for module in graph.modules
            for imported in graph.find_modules_directly_imported_by(module)
            if imported != module and graph.chain_exists(importer=imported, imported=module)
        }
    )
    assert cycles == []


def _flags(verb: str) -> set[str]:
    params = typer.main.get_command(app).commands[verb].params
    return {opt for p in params for opt in p.opts if opt.startswith("--") and not p.hidden}


def test_run_takes_every_setting_of_generate_and_train():
    own = {"--data", "--split", "--journal", "--passages-out"}  # their inputs and outputs
    assert (_flags("generate") | _flags("train")) - own - _flags("run") == set()


def test_flags_mean_one_thing_everywhere():
    for verb in ("evaluate", "report", "export"):
        assert "--adapter" in _flags(verb)  # a folder
    for verb in ("train", "run"):
        assert "--adapter-type" in _flags(verb) and "--adapter" not in _flags(verb)
    for verb in ("generate", "run"):
        assert {"--llm", "--llm-base-url", "--llm-api-key", "--base-url", "--api-key"} <= _flags(
            verb
        )


@pytest.mark.parametrize(
    "args, warning",
    [
        (["train", "--adapter", "linear"], "--adapter (the adapter family) is now --adapter-type"),
        (["generate", "--base-url", "http://127.0.0.1:9/v1"], "--base-url for the LLM is now"),
    ],
)
def test_old_flag_spellings_still_parse_with_a_deprecation_line(args, warning, tmp_path):
    """The renamed flags are accepted for one release (they then fail later, on purpose here:
    the data is missing), and say what the new spelling is."""
    result = subprocess.run(
        [sys.executable, "-m", "queryfit", *args, "--out", str(tmp_path / "o")]
        + (["--data", "missing.json"] if args[0] == "train" else ["--docs", "missing"]),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert warning in " ".join(result.stderr.split())


def test_the_top_level_package_and_python_dash_m():
    from queryfit.api import generate

    assert queryfit.generate is generate and queryfit.run.__module__ == "queryfit.workflow"
    result = subprocess.run(
        [sys.executable, "-m", "queryfit", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "generate" in result.stdout
