"""The command line: the happy path end to end, --json, and every user mistake as one line + exit 2.

These run the real ``queryfit`` entry point in a subprocess, with the bundled MiniLM model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from queryfit.data import save_dataset, split_dataset


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "QUERYFIT_STORE": str(cwd / "store.sqlite")}
    return subprocess.run(
        [sys.executable, "-m", "queryfit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Train and test files from the pydoc demo data, trimmed to keep the suite quick."""
    from queryfit.cli.demo import demo_dataset

    path = tmp_path_factory.mktemp("cli")
    data = demo_dataset()
    keep = list(data.queries)[:160]
    small = data.subset(keep)
    train, test = split_dataset(small, dev_fraction=0.3, seed=1)
    save_dataset(train, path / "train.json")
    save_dataset(test, path / "test.json")
    return path


def test_train_then_evaluate_with_json(workdir):
    trained = run("train", "--data", "train.json", "--out", "adapter", "--json", cwd=workdir)
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["train_queries"] + report["dev_queries"] == 112
    assert report["model_calls"] > 0
    assert (workdir / "adapter" / "adapter.safetensors").is_file()
    meta = json.loads((workdir / "adapter" / "adapter.json").read_text())
    assert meta["base_model"]["id"] == "sentence-transformers:all-MiniLM-L6-v2"
    assert meta["data"]["queries"] == 112 and len(meta["data"]["fingerprint"]) == 64

    again = run(
        "train", "--data", "train.json", "--out", "adapter", "--device", "cpu", "--json",
        cwd=workdir,
    )  # fmt: skip
    assert json.loads(again.stdout)["model_calls"] == 0  # the store served every text
    training = json.loads((workdir / "adapter" / "adapter.json").read_text())["training"]
    assert training["config"]["device"] == "cpu" and training["config"]["loss"] == "auto"
    assert training["loss_used"] == "corpus"  # auto, at this size

    evaluated = run(
        "evaluate",
        "--data",
        "test.json",
        "--adapter",
        "adapter",
        "--json",
        "--resamples",
        "2000",
        cwd=workdir,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["queries"] == 48
    assert set(result["base"]) >= {"hit@5", "mrr@5", "ndcg@10", "recall@10", "map@10"}
    assert result["verdict"].endswith("significant") or "worse" in result["verdict"]
    for row in result["differences"]:
        assert row["low"] <= row["delta"] <= row["high"]

    table = run(
        "evaluate", "--data", "test.json", "--adapter", "adapter", "--resamples", "500",
        "--device", "cpu", cwd=workdir,
    )  # fmt: skip
    assert table.returncode == 0 and "verdict:" in table.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "missing.json", "--out", "a"], "no such file"),
        (["train", "--data", "runs[1].json", "--out", "a"], "runs[1].json"),  # not rich markup
        (["evaluate", "--data", "test.json", "--adapter", "nowhere"], "not an adapter folder"),
        (["train", "--data", "train.json", "--out", "a", "--model", "bogus:thing"], "bogus"),
        (["train", "--data", "train.json", "--out", "a", "--split-by", "topic"], "--split-by"),
        (["train", "--data", "train.json", "--out", "a", "--adapter-type", "cubic"], "cubic"),
        (
            ["train", "--data", "train.json", "--out", "a", "--lr", "0"],
            "lr (--lr) must be a number above 0",
        ),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(workdir, args, message):
    result = run(*args, cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]  # the whole message on one line


def test_invalid_dataset_names_the_problem(workdir):
    bad = workdir / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "queries": {"q1": "what is x?", "q2": ""},
                "corpus": {"d1": "x is a letter"},
                "relevant_docs": {"q1": ["d9"], "q2": ["d1"]},
            }
        )
    )
    result = run("train", "--data", "bad.json", "--out", "a", cwd=workdir)
    assert result.returncode == 2
    assert "bad.json" in result.stderr and "d9" in result.stderr and "q2" in result.stderr


def test_adapter_for_another_model_is_refused(workdir):
    trained = run("train", "--data", "train.json", "--out", "adapter2", "--json", cwd=workdir)
    assert trained.returncode == 0
    meta_path = workdir / "adapter2" / "adapter.json"
    meta = json.loads(meta_path.read_text())
    meta["base_model"]["id"] = "openai:text-embedding-3-small"
    meta_path.write_text(json.dumps(meta))
    result = run(
        "evaluate",
        "--data",
        "test.json",
        "--adapter",
        "adapter2",
        "--model",
        "sentence-transformers:all-MiniLM-L6-v2",
        cwd=workdir,
    )
    assert result.returncode == 2 and "trained for openai:text-embedding-3-small" in result.stderr


def test_help_shows_examples(workdir):
    for verb in ("train", "evaluate", "embed", "demo"):
        result = run(verb, "--help", cwd=workdir)
        assert result.returncode == 0 and "Example" in result.stdout


def test_bad_training_setting_fails_before_any_embedding(workdir):
    result = run("train", "--data", "train.json", "--out", "a", "--batch-size", "0",
                 "--store", "untouched.sqlite", cwd=workdir)  # fmt: skip
    assert (
        result.returncode == 2
        and "batch_size (--batch-size) must be a whole number from 1" in result.stderr
    )
    assert not (workdir / "untouched.sqlite").exists()  # nothing was embedded first


HIDE_TORCH = """
import sys
class Hide:  # as if torch and sentence-transformers were never installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "sentence_transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
"""


@pytest.mark.parametrize("verb", [["train", "--data", "train.json", "--out", "a"], ["demo"]])
def test_without_torch_one_line_names_the_train_extra(verb, workdir):
    """A plain `pip install queryfit` has no torch: training needs the train extra, said once."""
    code = (
        f"{HIDE_TORCH}\nsys.argv = ['queryfit', *{verb!r}]\nfrom queryfit.cli import main\nmain()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'queryfit[train]'" in lines[0]
    assert "Traceback" not in result.stderr
