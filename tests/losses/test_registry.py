"""The loss registry and the training objective, checked against every loss in params.yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fewshot_dml.catalog.arms import BASELINE, PEERS
from fewshot_dml.config.loss_sections import LossParams
from fewshot_dml.config.params import Params, load_params
from fewshot_dml.losses import all_specs, describe, get_spec
from fewshot_dml.train.objective import Objective, build_objective, has_pairs

LOSSES = all_specs()

ROOT = Path(__file__).resolve().parents[2]
ALL = sorted(n for n, s in LOSSES.items() if s.kind != "setfit")  # SetFit trains outside the Objective
PROXY = sorted(n for n, s in LOSSES.items() if s.has_proxies)
PAIRS = sorted(n for n, s in LOSSES.items() if s.needs_pairs)


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


def objective(params: Params, name: str, num_classes: int, emb_dim: int, seed: int = 0) -> Objective:
    torch.manual_seed(seed)
    return build_objective(params.losses[name], num_classes, emb_dim)


def axis_state(obj: Objective, num_classes: int, emb_dim: int) -> dict[str, torch.Tensor]:
    """A state dict putting class c's proxies (every centre, for SoftTriple) along +-axis c // 2."""

    def direction(c: int) -> torch.Tensor:
        v = torch.zeros(emb_dim)
        v[c // 2] = 1.0 if c % 2 == 0 else -1.0
        return v

    state = {}
    for key, value in obj.dml.state_dict().items():
        rows = torch.stack([direction(c) for c in range(num_classes)])  # (C, D)
        if key == "proxies":
            state[key] = rows
        elif key == "W":
            state[key] = rows.T.contiguous()
        elif key == "fc":
            state[key] = rows.repeat_interleave(value.shape[1] // num_classes, dim=0).T.contiguous()
        else:
            raise AssertionError(f"unexpected state {key}")
    return state


def test_registry_covers_params_yaml(params: Params) -> None:
    assert {section.base for section in params.losses.values()} == set(LOSSES)
    assert {name for name, section in params.losses.items() if section.base == name} == set(LOSSES)
    for name, section in params.losses.items():
        assert set(section.hparams) == set(get_spec(section.base).hparams)
        assert (section.proxy_lr is not None) == get_spec(section.base).has_proxies
        assert (section.beta is None) == (name in PEERS) == (get_spec(section.base).kind != "dml")


def test_every_loss_with_a_metrix_form_has_a_metrix_variant(params: Params) -> None:
    with_form = {name for name, spec in LOSSES.items() if spec.soft is not None}
    assert with_form == {"contrastive", "multisimilarity", "proxyanchor", "supcon"}
    variants = {s.base: s for s in params.losses.values() if s.metrix is not None}
    assert set(variants) == with_form
    for base, variant in variants.items():  # a variant keeps its clean loss's settings
        clean = params.losses[base]
        assert (variant.beta, variant.proxy_lr, dict(variant.hparams)) == (clean.beta, clean.proxy_lr, dict(clean.hparams))


def test_validating_every_loss_does_not_load_torch() -> None:
    code = (
        "import sys, fewshot_dml.config.params as p, fewshot_dml.losses as l; l.all_specs(); p.load_params(); "
        "print(sorted(m for m in ('torch', 'pytorch_metric_learning') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_loss_lists_choices() -> None:
    with pytest.raises(KeyError, match=r"unknown loss 'nope'; expected one of \['arcface', 'cce', .*'triplet'\]"):
        get_spec("nope")


def test_build_rejects_wrong_hparams() -> None:
    with pytest.raises(ValueError, match=r"loss 'circle': hyperparameters \['m'\]; expected exactly \['gamma', 'm'\]"):
        get_spec("circle").build(2, 4, {"m": 0.4})
    with pytest.raises(ValueError, match=r"loss .cce.: hyperparameters \[.margin.\]; expected exactly \[\]"):
        get_spec("cce").build(2, 4, {"margin": 1.0})


def test_neg_beta_is_pml_beta(params: Params) -> None:
    module = get_spec("multisimilarity").build(2, 4, params.losses["multisimilarity"].hparams)
    assert (module.alpha, module.beta, module.base) == (2.0, 50.0, 0.5)


def test_cce_has_no_dml_term(params: Params) -> None:
    obj = objective(params, "cce", 3, 16)
    assert obj.dml is None and obj.proxy_parameters() == []
    assert get_spec("cce").class_scores is None
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    out = obj(logits, torch.randn(6, 16), labels)
    assert out.dml is None and out.pairs_ok
    assert torch.equal(out.total, torch.nn.functional.cross_entropy(logits, labels))


@pytest.mark.parametrize("name", ALL)
def test_one_step_trains_encoder_and_proxies(params: Params, name: str) -> None:
    num_classes, emb_dim = 3, 16
    obj = objective(params, name, num_classes, emb_dim)
    spec = get_spec(name)
    assert spec.has_proxies == bool(obj.proxy_parameters())
    encoder, head = torch.nn.Linear(8, emb_dim), torch.nn.Linear(emb_dim, num_classes)
    x, labels = torch.randn(12, 8), torch.arange(num_classes).repeat(4)
    before = [p.detach().clone() for p in (encoder.weight, *obj.proxy_parameters())]
    opt = torch.optim.SGD([*encoder.parameters(), *head.parameters(), *obj.proxy_parameters()], lr=0.5)
    emb = encoder(x)
    out = obj(head(emb), emb, labels)
    assert out.pairs_ok and torch.isfinite(out.total)
    if name != BASELINE:
        beta = params.losses[name].beta
        assert out.dml is not None and torch.isfinite(out.dml)
        torch.testing.assert_close(out.total, beta * out.cce + (1 - beta) * out.dml)
        (grad,) = torch.autograd.grad(out.dml, emb, retain_graph=True)
        assert grad.abs().sum() > 0, "the DML term must reach the encoder"
    out.total.backward()
    opt.step()
    after = [encoder.weight, *obj.proxy_parameters()]
    for old, new in zip(before, after, strict=True):
        assert not torch.equal(old, new)
    if spec.has_proxies:
        scores = spec.class_scores(obj.dml, emb.detach())
        assert scores.shape == (12, num_classes) and torch.isfinite(scores).all()


@pytest.mark.parametrize("name", PROXY)
def test_class_scores_direction(params: Params, name: str) -> None:
    obj = objective(params, name, 2, 3)
    obj.dml.load_state_dict(axis_state(obj, 2, 3))
    emb = torch.tensor([[1.0, 0.1, 0.0], [0.8, -0.3, 0.2], [-1.0, 0.2, 0.1], [-0.7, 0.0, -0.3]])
    scores = get_spec(name).class_scores(obj.dml, emb)
    assert scores.argmax(dim=1).tolist() == [0, 0, 1, 1], scores


@pytest.mark.parametrize("name", PROXY)
def test_class_scores_agree_with_the_loss(params: Params, name: str) -> None:
    """Labelling each example with its top-scored class must cost the loss less than the worst one."""
    obj = objective(params, name, 4, 8, seed=1)
    emb = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scores = get_spec(name).class_scores(obj.dml, emb)
        best, worst = obj.dml(emb, scores.argmax(dim=1)), obj.dml(emb, scores.argmin(dim=1))
    assert best < worst


@pytest.mark.parametrize("name", PROXY)
def test_each_centre_scores_highest_for_its_own_class(params: Params, name: str) -> None:
    """The centres' class ids follow the loss's own layout: a centre used as an embedding is its class's."""
    obj = objective(params, name, 4, 8, seed=2)
    centres, classes = get_spec(name).centres(obj.dml)
    per_class = params.losses[name].hparams.get("centers_per_class", 1)
    assert centres.shape == (4 * per_class, 8) and classes.tolist() == [c for c in range(4) for _ in range(per_class)]
    with torch.no_grad():
        assert get_spec(name).class_scores(obj.dml, centres).argmax(dim=1).tolist() == classes.tolist()


def test_losses_without_proxies_have_no_centres() -> None:
    assert all((spec.centres is None) == (not spec.has_proxies) for spec in LOSSES.values())


def test_class_scores_float16_embeddings(params: Params) -> None:
    obj = objective(params, "softtriple", 3, 8)
    scores = get_spec("softtriple").class_scores(obj.dml, torch.randn(5, 8).half())
    assert scores.dtype == torch.float32 and obj.dml.fc.dtype == torch.float32


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [2, 2, 2, 2]], ids=["distinct", "one-class"])
def test_pair_losses_report_batches_without_pairs(params: Params, name: str, labels: list[int]) -> None:
    obj = objective(params, name, 4, 8)
    logits, labels_t = torch.randn(4, 4), torch.tensor(labels)
    out = obj(logits, torch.randn(4, 8, requires_grad=True), labels_t)
    assert not out.pairs_ok and out.dml is None
    torch.testing.assert_close(out.total, params.losses[name].beta * out.cce)


@pytest.mark.parametrize("name", PROXY)
def test_proxy_losses_need_no_pairs(params: Params, name: str) -> None:
    out = objective(params, name, 4, 8)(torch.randn(4, 4), torch.randn(4, 8), torch.arange(4))
    assert out.pairs_ok and out.dml is not None


def test_has_pairs() -> None:
    assert has_pairs(torch.tensor([0, 1, 1]))
    assert not has_pairs(torch.tensor([0, 1, 2]))
    assert not has_pairs(torch.tensor([1, 1, 1]))


def test_objective_rejects_bad_beta() -> None:
    loss = LossParams(name="supcon", beta=None, proxy_lr=None, hparams={"temperature": 0.1})
    with pytest.raises(ValueError, match=r"loss 'supcon': beta=None; expected a number in \[0, 1\]"):
        build_objective(loss, 2, 4)


def test_describe_lists_every_loss() -> None:
    table = describe()
    for name, spec in LOSSES.items():
        (row,) = [line for line in table.splitlines() if line.startswith(f"| `{name}` |")]
        assert all(f"`{h}`" in row for h in spec.hparams)
