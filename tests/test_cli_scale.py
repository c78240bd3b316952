"""--device and --loss mistakes are one line (test_cli.py's train/evaluate run records them)."""

from __future__ import annotations

import pytest
import torch
from test_cli import run, workdir  # noqa: F401  (the fixture)


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
