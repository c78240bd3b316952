"""Training: torch twins match numpy, learning happens, the gate ships identity, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic_vectors import distorted_queries

from queryfit.adapters import Adapter
from queryfit.errors import TrainingError
from queryfit.training import TrainConfig, fit_adapter
from queryfit.training.losses import corpus_softmax_loss, in_batch_loss
from queryfit.training.modules import build_module
from queryfit.vectors import RetrievalVectors

DIM = 16


def synthetic(n_docs=60, per_doc=4, noise=0.35, seed=0, learnable=True) -> RetrievalVectors:
    return distorted_queries(DIM, n_docs, per_doc, noise, seed, learnable)


def split(v: RetrievalVectors, seed=0):
    rows = np.random.default_rng(seed).permutation(len(v.queries))
    cut = len(rows) // 4
    return v.select(rows[cut:]), v.select(rows[:cut])


@pytest.mark.parametrize("kind", ["linear", "residual_mlp", "low_rank"])
def test_torch_module_matches_numpy_adapter(kind):
    torch.manual_seed(0)
    module = build_module(kind, DIM, bias=True, hidden_dim=7, rank=3)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    params = {n: p.detach().numpy().copy() for n, p in module.named_parameters()}
    adapter = Adapter(type=kind, params=params, dim=DIM, normalize=False)
    x = np.random.default_rng(1).normal(size=(5, DIM)).astype(np.float32)
    expected = module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(adapter.transform(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "residual_mlp", "low_rank"])
def test_every_family_starts_as_identity(kind):
    module = build_module(kind, DIM, bias=True, hidden_dim=None, rank=4)
    x = torch.randn(3, DIM)
    torch.testing.assert_close(module(x), x)


def test_corpus_loss_does_not_punish_a_second_positive():
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0]]), dim=-1)
    docs = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    one = corpus_softmax_loss(q, docs, torch.tensor([[True, False, False]]), 20.0)
    both = corpus_softmax_loss(q, docs, torch.tensor([[True, True, False]]), 20.0)
    assert both < one  # the twin passage counts as relevant, not as a negative
    assert both.item() == pytest.approx(0.0, abs=1e-6)


def test_in_batch_mask_removes_shared_passage_as_negative():
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1]]), dim=-1)
    docs = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # both questions are about the same passage
    shared = torch.tensor([[False, True], [True, False]])
    unmasked = in_batch_loss(q, docs, None, 20.0)
    masked = in_batch_loss(q, docs, shared, 20.0)
    assert masked.item() == pytest.approx(0.0, abs=1e-6) and unmasked.item() > 0.5


def test_training_learns_a_learnable_map():
    data = synthetic()
    train, dev = split(data)
    result = fit_adapter(train, TrainConfig(max_epochs=40, lr=3e-3), dev=dev, refit_on=data)
    assert not result.shipped_identity
    assert result.best_score > result.identity_score + 0.05
    assert result.best_epoch >= 1 and result.history[0].epoch == 0
    assert all(r.train_loss is not None for r in result.history[1:])


def test_gate_ships_identity_when_training_cannot_help():
    """Train labels point at the wrong passages, dev labels at the right ones: whatever training
    learns makes dev worse, so the gate must ship the identity."""
    rng = np.random.default_rng(3)
    docs = rng.normal(size=(50, DIM)).astype(np.float32)
    wrong = rng.permutation(50)

    def part(n_per_doc, labels):
        rows = [
            (d, docs[d] + 0.8 * rng.normal(size=DIM)) for d in range(50) for _ in range(n_per_doc)
        ]
        queries = np.asarray([q for _, q in rows], dtype=np.float32)
        return RetrievalVectors(queries, docs, [{int(labels[d]): 1.0} for d, _ in rows])

    train, dev = part(4, wrong), part(1, np.arange(50))
    result = fit_adapter(train, TrainConfig(max_epochs=15, lr=1e-2), dev=dev, refit_on=train)
    assert result.shipped_identity
    assert result.adapter.type == "identity"
    assert "shipping the identity" in result.decision
    assert max(r.dev_score for r in result.history[1:]) <= result.identity_score
    assert result.history[-1].dev_score < result.identity_score - 0.05  # training really hurt


def test_training_is_deterministic_under_a_seed():
    train, dev = split(synthetic())
    config = TrainConfig(max_epochs=5, lr=3e-3, seed=7)
    a = fit_adapter(train, config, dev=dev).adapter
    b = fit_adapter(train, config, dev=dev).adapter
    assert a.type == "linear"
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    c = fit_adapter(train, TrainConfig(max_epochs=5, lr=3e-3, seed=8), dev=dev).adapter
    assert any(not np.array_equal(a.params[n], c.params[n]) for n in a.params)


def test_in_batch_loss_trains_too():
    data = synthetic()
    train, dev = split(data)
    result = fit_adapter(train, TrainConfig(loss="in_batch", max_epochs=20, lr=3e-3), dev=dev)
    assert result.best_score > result.identity_score


def test_bad_settings_are_named():
    train, _ = split(synthetic())
    with pytest.raises(TrainingError, match=r"loss \(--loss\) must be one of auto, corpus"):
        fit_adapter(train, TrainConfig(loss="triplet"))
    with pytest.raises(TrainingError, match=r"lr \(--lr\) must be a number above 0"):
        fit_adapter(train, TrainConfig(lr=0))
    with pytest.raises(TrainingError, match=r"adapter_type \(--adapter-type\) must be one of"):
        fit_adapter(train, TrainConfig(adapter_type="transformer", epochs=1))
