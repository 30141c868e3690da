"""The soft-label losses equal pytorch-metric-learning's with 0/1 weights, forward and gradient."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses as pml

from fewshot_dml.catalog import loss_spec
from fewshot_dml.losses import get_spec

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])


def embeddings(seed: int = 0) -> torch.Tensor:
    return torch.randn(len(LABELS), 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64, requires_grad=True)


PAIR_LOSSES = {
    "contrastive": (lambda: pml.ContrastiveLoss(pos_margin=0.1, neg_margin=0.9), get_spec("contrastive").soft),
    "multisimilarity": (lambda: pml.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5), get_spec("multisimilarity").soft),
    "supcon": (lambda: pml.SupConLoss(temperature=0.1), get_spec("supcon").soft),
}


@pytest.mark.parametrize("name", list(PAIR_LOSSES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_losses_with_hard_weights_equal_the_library(name: str, seed: int) -> None:
    make, ours = PAIR_LOSSES[name]
    a, b = embeddings(seed), embeddings(seed).detach().clone().requires_grad_(True)
    expected = make()(a, LABELS)
    pos, neg = loss_spec.hard_pair_weights(LABELS)
    got = ours(make(), b, b, pos.double(), neg.double())
    assert got.item() == pytest.approx(expected.item(), rel=1e-10, abs=1e-12)
    expected.backward()
    got.backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_proxyanchor_with_hard_weights_equals_the_library(seed: int) -> None:
    torch.manual_seed(seed)
    lib = pml.ProxyAnchorLoss(num_classes=4, embedding_size=6, margin=0.1, alpha=32.0).double()
    ours = pml.ProxyAnchorLoss(num_classes=4, embedding_size=6, margin=0.1, alpha=32.0).double()
    ours.load_state_dict(lib.state_dict())
    a, b = embeddings(seed), embeddings(seed).detach().clone().requires_grad_(True)
    expected = lib(a, LABELS)
    pos = torch.nn.functional.one_hot(LABELS, 4).double()
    got = get_spec("proxyanchor").soft(ours, b, pos, 1 - pos)
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)
    expected.backward()
    got.backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours.proxies.grad, lib.proxies.grad, rtol=1e-9, atol=1e-12)


def test_weights_scale_the_terms_they_stand_for() -> None:
    # One anchor, one candidate: a candidate that is half positive, half negative.
    ms = pml.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5)
    a = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    c = torch.tensor([[0.6, 0.8]], dtype=torch.float64)  # cosine 0.6
    lam = torch.tensor([[0.3]], dtype=torch.float64)
    got = get_spec("multisimilarity").soft(ms, a, c, lam, 1 - lam)
    s = 0.6
    expected = math.log1p(0.3 * math.exp(2.0 * (0.5 - s))) / 2 + math.log1p(0.7 * math.exp(50.0 * (s - 0.5))) / 50
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_log1p_sum_exp_is_zero_without_weights_and_exact_otherwise() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 0.0], [0.5, 0.25]], dtype=torch.float64)
    out = loss_spec.log1p_sum_exp(x, w, dim=1)
    assert out[0].item() == 0.0
    assert out[1].item() == pytest.approx(torch.log(1 + 0.5 * torch.exp(x[1, 0]) + 0.25 * torch.exp(x[1, 1])).item())
