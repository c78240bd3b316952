"""--device and --loss on the command line: the happy path records them, mistakes are one line."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli import run, workdir  # noqa: F401  (the fixture)


def test_train_on_the_cpu_records_device_and_loss(workdir):  # noqa: F811
    result = run(
        "train", "--data", "train.json", "--out", "adapter-cpu", "--device", "cpu",
        "--max-epochs", "3", "--json", cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    training = json.loads((workdir / "adapter-cpu" / "adapter.json").read_text())["training"]
    assert training["config"]["device"] == "cpu" and training["config"]["loss"] == "auto"
    assert training["loss_used"] == "corpus"
    evaluated = run(
        "evaluate", "--data", "test.json", "--adapter", "adapter-cpu", "--device", "cpu",
        "--resamples", "200", "--json", cwd=workdir,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "train.json", "--out", "a", "--device", "tpu"], "--device"),
        (["embed", "--data", "train.json", "--device", "tpu"], "--device"),
        (["train", "--data", "train.json", "--out", "a", "--loss", "triplet"], "--loss"),
    ],
)
def test_device_and_loss_mistakes_give_one_line(workdir, args, message):  # noqa: F811
    result = run(*args, cwd=workdir)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_named(workdir):  # noqa: F811
    for args in (
        ["train", "--data", "train.json", "--out", "a"],
        ["embed", "--data", "train.json"],
    ):
        result = run(*args, "--device", "cuda", cwd=workdir)
        assert result.returncode == 2 and "no CUDA GPU" in result.stderr, result.stderr


def test_ray_workers_get_the_device_of_a_local_model_only():
    from queryfit.cli.options import ModelChoice

    assert ModelChoice(device="cpu").worker_options == {"device": "cpu"}
    assert ModelChoice(model="st:some-folder", device="cuda").worker_options == {"device": "cuda"}
    assert ModelChoice(device="auto").worker_options == {}
    api_model = ModelChoice(model="openai:text-embedding-3-small", base_url="http://x/v1")
    assert ModelChoice(**(api_model.__dict__ | {"device": "cpu"})).worker_options == {
        "base_url": "http://x/v1"
    }
