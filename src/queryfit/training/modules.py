"""Torch twins of the numpy adapter families, for training only.

Parameter names match :data:`queryfit.adapters.FAMILIES`, so exporting a trained module is a
plain copy of its tensors. Every family starts as the identity map: training begins from the base
model's own ranking and can only move away from it as far as the data asks.
"""

from __future__ import annotations

import torch
from torch import nn

from queryfit.errors import TrainingError


class LinearMap(nn.Module):
    """``W q + b`` with ``W = I``, ``b = 0`` at the start."""

    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.register_buffer("eye", torch.eye(dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.weight.T
        return out + self.bias if self.bias is not None else out

    def identity_distance(self) -> torch.Tensor:
        dist = ((self.weight - self.eye) ** 2).sum()
        return dist + (self.bias**2).sum() if self.bias is not None else dist


class ResidualMLP(nn.Module):
    """``q + W2 relu(W1 q + b1) + b2`` with a zero output layer, so it starts as the identity."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        inner = nn.Linear(dim, hidden_dim)
        self.in_weight, self.in_bias = inner.weight, inner.bias
        self.out_weight = nn.Parameter(torch.zeros(dim, hidden_dim))
        self.out_bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(x @ self.in_weight.T + self.in_bias)
        return x + hidden @ self.out_weight.T + self.out_bias

    def identity_distance(self) -> torch.Tensor:
        return (self.out_weight**2).sum() + (self.out_bias**2).sum()


class LowRankResidual(nn.Module):
    """``q + U Vᵀ q`` with ``U = 0``: a cheap correction of rank ``r``."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.randn(rank, dim) / dim**0.5)
        self.up = nn.Parameter(torch.zeros(dim, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (x @ self.down.T) @ self.up.T

    def identity_distance(self) -> torch.Tensor:
        return ((self.up @ self.down) ** 2).sum()


def build_module(
    kind: str, dim: int, *, bias: bool, hidden_dim: int | None, rank: int
) -> nn.Module:
    """The trainable module for one adapter family, initialised to the identity."""
    if kind == "linear":
        return LinearMap(dim, bias=bias)
    if kind == "residual_mlp":
        return ResidualMLP(dim, hidden_dim or dim)
    if kind == "low_rank":
        return LowRankResidual(dim, min(rank, dim))
    raise TrainingError(
        f"unknown adapter type {kind!r}; choose one of: linear, residual_mlp, low_rank"
    )
