"""Metrix: which examples are mixed, the weights they carry, gradients, determinism, token-level DML."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses as pml

from fewshot_dml.catalog import loss_spec
from fewshot_dml.config.loss_sections import MetrixParams
from fewshot_dml.config.params import load_params
from fewshot_dml.losses import get_spec
from fewshot_dml.model.classifier import Features, load_classifier
from fewshot_dml.train.metrix import Metrix, choose, interpolate, pair_weights, proxy_weights
from fewshot_dml.train.objective import Objective, build_objective, token_view
from tiny_models import tiny_train_params

ROOT = Path(__file__).resolve().parents[2]
PARAMS = load_params(ROOT / "params.yaml")
VARIANTS = sorted(n for n, s in PARAMS.losses.items() if s.metrix is not None)


def test_each_anchor_mixes_a_positive_with_its_hardest_negative() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2])
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.6], [-1.0, 0.0]])
    mixing = choose(labels, emb, 0.3, np.random.default_rng(0))
    assert mixing.anchor.tolist() == [0, 1, 2, 3, 4]
    assert mixing.first.tolist()[:4] == [1, 0, 3, 2]  # the only positive of each
    assert mixing.first.tolist()[4] == 4  # class 2 has no positive: the anchor itself is mixed
    # The hardest negative is the most similar example of another class.
    assert mixing.second.tolist() == [3, 3, 1, 1, 2]


def test_weights_make_a_mixed_example_lambda_positive_and_one_minus_lambda_negative() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    mixing = choose(labels, torch.eye(4), 0.25, np.random.default_rng(0))
    pos, neg = pair_weights(mixing, 4)
    assert torch.equal(pos, 0.25 * torch.eye(4)) and torch.equal(neg, 0.75 * torch.eye(4))
    pos, neg = proxy_weights(mixing, labels, 3)
    # mixed m: class of its positive (= the anchor's) with 0.25, its negative's class with 0.75.
    assert pos.tolist() == [[0.25, 0.75, 0.0], [0.25, 0.75, 0.0], [0.75, 0.25, 0.0], [0.75, 0.25, 0.0]]
    assert torch.equal(neg, 1 - pos)


def test_lambda_one_mixes_nothing_in() -> None:
    x = torch.randn(4, 3)
    mixing = choose(torch.tensor([0, 0, 1, 1]), x, 1.0, np.random.default_rng(0))
    assert torch.equal(interpolate(x, mixing), x[mixing.first])


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_both_mixed_sources_at_the_embedding(name: str) -> None:
    section = PARAMS.losses[name]
    objective = build_objective(replace(section, metrix=replace(section.metrix, point="embedding")), 2, 8, seed=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    emb = torch.randn(6, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    mixed, mixing = objective.metrix.mixed_embeddings(emb, labels, None, None, None)
    loss = objective._mixed_loss(emb.detach(), labels, mixed, mixing)  # the mixed term alone
    loss.backward()
    assert 0 < mixing.lam < 1 and loss.item() > 0
    for rows in (mixing.first, mixing.second):
        assert (emb.grad[rows].abs().sum(dim=1) > 0).all(), "a mixed source got no gradient"


def test_feature_mixing_sends_gradients_through_the_upper_layers_to_both_sources(tiny_bert_dir: Path) -> None:
    model, tokenizer = load_classifier(tiny_train_params(tiny_bert_dir, pooling="mean"), 2)
    section = PARAMS.losses["supcon-metrix"]
    objective = build_objective(replace(section, metrix=replace(section.metrix, layer=1)), 2, 32, depth=model.depth, seed=0)
    batch = dict(tokenizer(["a good film", "great acting", "a dull plot", "awful , boring"], padding=True, return_tensors="pt"))
    labels = torch.tensor([1, 1, 0, 0])
    _, pooled, states = model.forward_features(batch, objective.hidden_layer)
    states.hidden.retain_grad()
    mixed, mixing = objective.metrix.mixed_embeddings(pooled, labels, states.hidden, states.mask, model.encode_from)
    objective._mixed_loss(pooled.detach(), labels, mixed, mixing).backward()
    grads = states.hidden.grad.abs().sum(dim=(1, 2))
    assert (grads[mixing.first] > 0).all() and (grads[mixing.second] > 0).all()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.encoder.layer[1].parameters())


def test_encode_from_a_layer_reproduces_the_forward(tiny_roberta_dir: Path) -> None:
    model, tokenizer = load_classifier(tiny_train_params(tiny_roberta_dir, pooling="mean"), 2)
    model.eval()
    batch = dict(tokenizer(["one short", "a somewhat longer sentence here"], padding=True, return_tensors="pt"))
    for layer in range(model.depth + 1):
        _, pooled, states = model.forward_features(batch, layer)
        torch.testing.assert_close(model.encode_from(states.hidden, states.mask, layer), pooled)


def test_draws_are_deterministic_under_the_seed() -> None:
    params = MetrixParams(point="embedding", layer=1, alpha=2.0, weight=0.4)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    emb = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))

    def draws(seed: int) -> list:
        metrix = Metrix(params, seed)
        return [
            tuple(map(lambda t: t.tolist() if torch.is_tensor(t) else t, metrix.mixed_embeddings(emb, labels, None, None, None)[1]))
            for _ in range(5)
        ]

    assert draws(3) == draws(3) and draws(3) != draws(4)
    lams = [Metrix(params, s).rng.beta(2.0, 2.0) for s in range(200)]
    assert 0.4 < float(np.mean(lams)) < 0.6  # Beta(2, 2) has mean 1/2


def test_token_level_dml_is_the_loss_over_every_non_padding_token() -> None:
    tokens = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    labels = torch.tensor([0, 1, 0])
    picked, token_labels = token_view(Features(tokens, mask, None), labels)
    # Direct: sentence 0's three tokens, sentence 1's two, sentence 2's four, each with its own label.
    direct = torch.cat([tokens[0, :3], tokens[1, :2], tokens[2, :4]])
    assert torch.equal(picked, direct) and token_labels.tolist() == [0] * 3 + [1] * 2 + [0] * 4
    section = replace(PARAMS.losses["supcon"], dml_on="tokens")
    objective = build_objective(section, 2, 5)
    logits = torch.zeros(3, 2)
    out = objective(logits, tokens[:, 0], labels, Features(tokens, mask, None))
    expected = pml.SupConLoss(temperature=0.1)(direct, token_labels.clone())
    assert out.dml.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_proxy_loss_on_tokens_keeps_pooled_proxy_inference() -> None:
    section = replace(PARAMS.losses["proxyanchor"], dml_on="tokens")
    objective = build_objective(section, 2, 5)
    tokens = torch.randn(2, 3, 5)
    out = objective(torch.zeros(2, 2), tokens[:, 0], torch.tensor([0, 1]), Features(tokens, torch.ones(2, 3), None))
    assert out.dml is not None and objective.dml.proxies.shape == (2, 5)  # proxies live in the pooled space


def test_a_metrix_layer_beyond_the_encoder_is_refused() -> None:
    section = PARAMS.losses["proxyanchor-metrix"]
    with pytest.raises(
        ValueError,
        match=r"losses\.proxyanchor-metrix\.metrix\.layer: 6 is not inside the encoder's "
        r"6 layers; expected 1\.\.5",
    ):
        build_objective(replace(section, metrix=replace(section.metrix, layer=6)), 2, 8, depth=6)


def test_objective_refuses_metrix_on_a_loss_without_a_soft_form() -> None:

    with pytest.raises(ValueError, match=r"loss 'triplet' has no soft-label form"):
        Objective(get_spec("triplet"), 0.4, pml.TripletMarginLoss(), metrix=Metrix(MetrixParams("embedding", 1, 2.0, 0.4), 0))
    assert loss_spec.hard_pair_weights(torch.tensor([0, 1]))[0].sum() == 0
