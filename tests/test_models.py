"""Loading a model, pooling, the classification head, pair encoding and device selection."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from fewshot_dml.data.table import make_table
from fewshot_dml.model import device
from fewshot_dml.model.batching import collate, is_pair_table, tokenize
from fewshot_dml.model.classifier import TextClassifier, load_classifier, pool
from fewshot_dml.model.device import precision_for, resolve_device
from tiny_models import tiny_train_params as train_params

CPU = torch.device("cpu")


def test_unknown_model_name_lists_the_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no retries
    with pytest.raises(ValueError, match=r"train.model='minlm'.*aliases \['minilm'\]"):
        load_classifier(train_params("minlm"), num_labels=2)


def test_pooling_cls_is_first_token_and_mean_ignores_padding() -> None:
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(pool(hidden, mask, "cls"), hidden[:, 0])
    expected = torch.stack([hidden[0, :2].mean(0), hidden[1].mean(0)])
    assert torch.allclose(pool(hidden, mask, "mean"), expected)
    with pytest.raises(ValueError, match=r"train.pooling='max'.*\['cls', 'mean'\]"):
        pool(hidden, mask, "max")


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classifier_output_does_not_depend_on_padding(tiny_bert_dir: Path, pooling: str) -> None:
    torch.manual_seed(0)
    model, tok = load_classifier(train_params(tiny_bert_dir, pooling=pooling), num_labels=3)
    model.eval()
    text = ["the movie was great"]
    short = {k: v for k, v in tok(text, return_tensors="pt").items()}
    padded = {k: v for k, v in tok(text, padding="max_length", max_length=16, return_tensors="pt").items()}
    assert padded["input_ids"].shape[1] > short["input_ids"].shape[1]
    with torch.no_grad():
        logits_s, pooled_s = model(short)
        logits_p, pooled_p = model(padded)
        hidden = model.encoder(**short).last_hidden_state
    assert torch.allclose(pooled_s, pooled_p, atol=1e-5) and torch.allclose(logits_s, logits_p, atol=1e-5)
    if pooling == "cls":
        assert torch.allclose(pooled_s, hidden[:, 0])
    else:
        assert torch.allclose(pooled_s, hidden.mean(dim=1), atol=1e-6)
        assert not torch.allclose(pooled_s, hidden[:, 0])


def test_head_shapes_and_design(tiny_roberta_dir: Path) -> None:
    torch.manual_seed(0)
    model, tok = load_classifier(train_params(tiny_roberta_dir, dropout=0.3), num_labels=5)
    assert isinstance(model, TextClassifier) and model.embedding_size == 32
    assert model.dropout.p == 0.3
    assert model.dense.weight.shape == (32, 32) and model.out_proj.weight.shape == (5, 32)
    batch = {k: v for k, v in tok(["a dull film", "great acting !", "what ?"], padding=True, return_tensors="pt").items()}
    model.eval()
    with torch.no_grad():
        logits, pooled = model(batch)
        expected = model.out_proj(torch.tanh(model.dense(pooled)))  # dropout is the identity in eval mode
    assert logits.shape == (3, 5) and pooled.shape == (3, 32)
    assert torch.allclose(logits, expected, atol=1e-6)
    model.train()
    torch.manual_seed(1)
    with torch.no_grad():
        train_logits, _ = model(batch)
    assert not torch.allclose(train_logits, logits)  # dropout is active in training


def test_head_init_follows_the_seed(tiny_bert_dir: Path) -> None:
    heads = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        model, _ = load_classifier(train_params(tiny_bert_dir), num_labels=2)
        heads.append(model.out_proj.weight.detach().clone())
    assert torch.equal(heads[0], heads[1]) and not torch.equal(heads[0], heads[2])


def test_bad_head_arguments(tiny_bert_dir: Path) -> None:
    model, _ = load_classifier(train_params(tiny_bert_dir), num_labels=2)
    with pytest.raises(ValueError, match="train.pooling='first'"):
        TextClassifier(model.encoder, "first", 2, 0.1)
    with pytest.raises(ValueError, match="num_labels=1"):
        TextClassifier(model.encoder, "cls", 1, 0.1)


def test_pair_tables_are_encoded_as_sentence_pairs(tiny_bert_dir: Path, tiny_roberta_dir: Path) -> None:
    pairs = make_table([1, 0], ["the bank reported results .", "shares fell ."], ["results were reported .", "who ?"])
    single = make_table([1, 0], ["the bank reported results .", "shares fell ."], ["", ""])
    assert is_pair_table(pairs) and not is_pair_table(single)
    _, bert = load_classifier(train_params(tiny_bert_dir), num_labels=2)
    enc = collate(bert, tokenize(bert, pairs, [0, 1], 16, pair=True), CPU)
    assert enc["token_type_ids"].max() == 1  # the second segment
    assert (enc["input_ids"] == bert.sep_token_id).sum(dim=1).tolist() == [2, 2]
    enc = collate(bert, tokenize(bert, single, [0, 1], 16, pair=False), CPU)
    assert enc["token_type_ids"].max() == 0
    assert (enc["input_ids"] == bert.sep_token_id).sum(dim=1).tolist() == [1, 1]
    _, roberta = load_classifier(train_params(tiny_roberta_dir), num_labels=2)
    enc = collate(roberta, tokenize(roberta, pairs, [1], 16, pair=True), CPU)
    assert (enc["input_ids"] == roberta.sep_token_id).sum().item() == 3  # <s> a </s></s> b </s>
    long = make_table([0], [" ".join(["word"] * 40)], [" ".join(["other"] * 40)])
    enc = tokenize(bert, long, [0], 16, pair=True)[0]
    assert len(enc["input_ids"]) == 16 and 1 in enc["token_type_ids"]  # both segments truncated


def test_resolve_device() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match=r"train.device='tpu'.*\['auto', 'cpu', 'cuda'\]"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert precision_for(CPU, "fp32").dtype is None


@pytest.mark.parametrize("native", [True, False])
def test_precision_follows_the_param_and_the_hardware(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": native, "amx_bf16": False})
    assert device.native_bf16(CPU) is native
    assert precision_for(CPU, "fp32") == device.FP32
    assert precision_for(CPU, "auto").dtype == (torch.bfloat16 if native else None)
    if native:
        assert precision_for(CPU, "bf16").dtype == torch.bfloat16
    else:
        with pytest.raises(ValueError, match=r"train.precision='bf16' but this cpu has no native bfloat16"):
            precision_for(CPU, "bf16")
    with pytest.raises(ValueError, match=r"train.precision='fp16'; expected one of \['fp32', 'bf16', 'auto'\]"):
        precision_for(CPU, "fp16")


def test_packaged_minilm_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    train = dataclasses.replace(train_params("minilm"), pooling="mean")
    model, tok = load_classifier(train, num_labels=2)
    batch = {k: v for k, v in tok(["a wonderful film", "a terrible film"], padding=True, return_tensors="pt").items()}
    model.eval()
    with torch.no_grad():
        logits, pooled = model(batch)
    assert logits.shape == (2, 2) and pooled.shape == (2, 384) and torch.isfinite(pooled).all()
    assert not torch.allclose(pooled[0], pooled[1])


def test_reinit_top_layers_redraws_exactly_the_top_k(tiny_bert_dir: Path) -> None:
    torch.manual_seed(0)
    kept, _ = load_classifier(train_params(tiny_bert_dir), num_labels=2)
    after_kept = torch.rand(1)
    torch.manual_seed(0)
    model, _ = load_classifier(train_params(tiny_bert_dir, reinit_layers=1), num_labels=2)
    depth = model.depth
    assert depth is not None and depth >= 2
    before, after = dict(kept.named_parameters()), dict(model.named_parameters())
    top = f"encoder.encoder.layer.{depth - 1}."
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(n.startswith(top) for n in changed)
    assert all(n.startswith(top) for n in changed) and not any("LayerNorm" in n for n in changed)  # LN was (1, 0)
    assert torch.equal(after[f"{top}output.LayerNorm.weight"], torch.ones_like(after[f"{top}output.LayerNorm.weight"]))
    assert torch.equal(kept.out_proj.weight, model.out_proj.weight)  # the head is drawn first, unchanged
    # k = 0 draws nothing from the RNG: the stream after loading is the one of a plain load.
    torch.manual_seed(0)
    load_classifier(train_params(tiny_bert_dir, reinit_layers=0), num_labels=2)
    assert torch.equal(torch.rand(1), after_kept)


def test_reinit_beyond_the_encoder_depth_is_rejected(tiny_bert_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"train.reinit_layers=9: the encoder has 2 layers; expected 0..2"):
        load_classifier(train_params(tiny_bert_dir, reinit_layers=9), num_labels=2)


def test_encoder_depths_count_from_the_top(tiny_bert_dir: Path) -> None:
    model, _ = load_classifier(train_params(tiny_bert_dir), num_labels=2)
    depths = model.encoder_depths()
    assert set(depths) == {n for n, _ in model.encoder.named_parameters()}
    assert depths["embeddings.word_embeddings.weight"] == 2
    assert depths["encoder.layer.0.attention.self.query.weight"] == 1
    assert depths["encoder.layer.1.output.dense.weight"] == 0


def test_a_saved_classifier_loads_back_with_the_same_outputs(tiny_roberta_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, tokenizer = load_classifier(dataclasses.replace(train_params(tiny_roberta_dir), pooling="mean"), 3)
    model.eval()
    model.save(tmp_path / "model", tokenizer)
    loaded, loaded_tokenizer = TextClassifier.load(tmp_path / "model")
    table = make_table([0, 1], ["a short one", "and a longer second sentence"], ["", ""])
    batch = collate(tokenizer, tokenize(tokenizer, table, [0, 1], 16, pair=False), CPU)
    assert not loaded.training and loaded.pooling == "mean" and loaded.num_labels == 3
    with torch.no_grad():
        for got, want in zip(loaded(batch), model(batch), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert loaded_tokenizer("a short one")["input_ids"] == tokenizer("a short one")["input_ids"]


def test_loading_a_directory_without_a_head_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no head\.pt; expected a directory written by TextClassifier\.save"):
        TextClassifier.load(tmp_path)
