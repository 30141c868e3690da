"""Tiny, randomly initialised transformer checkpoints written to disk for offline tests.

Also :func:`tiny_train_params`, small ``TrainParams`` for training them in a few seconds.

Both builders write a directory that ``AutoModel.from_pretrained(dir)`` and
``AutoTokenizer.from_pretrained(dir)`` load with no hub access. Weights are drawn from a fixed seed
inside ``torch.random.fork_rng`` so building a model never changes the caller's random state.
Vocabularies come from :data:`CORPUS`: small, but covering ordinary English text (byte-level BPE
covers any text; WordPiece falls back to characters and ``[UNK]``). Both are the same bytes in every
process, so a test session's model, and what it learns, does not depend on the process.
"""

from __future__ import annotations

import json
import re
import string
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import BertConfig, BertModel, BertTokenizer, RobertaConfig, RobertaModel, RobertaTokenizer

from fewshot_dml.config.sections import TrainParams

CORPUS = (
    "the movie was a wonderful surprise and the acting was great",
    "a dull , boring film with a terrible script",
    "the camera takes sharp pictures and the battery lasts long",
    "the screen broke after two days , awful product",
    "what is the capital city of france ?",
    "how many people live in new york ?",
    "who wrote the novel about the white whale ?",
    "when did the second world war end ?",
    "the company said its profits rose sharply in the third quarter .",
    "shares fell after the bank reported weaker results .",
    "she loves the story but hates the ending .",
    "it is neither good nor bad , just fine .",
)

HIDDEN = 32
LAYERS = 2
HEADS = 2
INTERMEDIATE = 64
MAX_POSITIONS = 128
SEED = 1234


def _save_model(model: torch.nn.Module, out_dir: Path) -> None:
    model.eval()
    model.save_pretrained(out_dir)


def wordpiece_vocab(corpus: Sequence[str]) -> dict[str, int]:
    """Special tokens, characters and their ``##`` continuations, then the corpus's words, sorted.

    Built by hand because ``tokenizers``' WordPiece trainer is not deterministic across processes
    (its token set and ids change with the hash seed), which made each test session's model differ.
    """
    words = sorted({w for line in corpus for w in re.findall(r"\w+|[^\w\s]", line.lower())})
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *words]
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def build_tiny_bert(out_dir: str | Path) -> Path:
    """Write a 2-layer, 32-wide BERT with a WordPiece vocabulary of :data:`CORPUS`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = wordpiece_vocab(CORPUS)
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=MAX_POSITIONS)
    tokenizer.save_pretrained(out_dir)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=2,
        pad_token_id=vocab["[PAD]"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        _save_model(BertModel(config), out_dir)
    return out_dir


def build_tiny_roberta(out_dir: str | Path, vocab_size: int = 400) -> Path:
    """Write a 2-layer, 32-wide RoBERTa with a byte-level BPE trained on :data:`CORPUS`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # RoBERTa's special-token ids: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(CORPUS, vocab_size=vocab_size, min_frequency=1, special_tokens=specials, show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = trainer.save_model(tmp)
        vocab = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        merges = [
            tuple(line.split(" "))
            for line in Path(merges_file).read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#version")
        ]
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_POSITIONS)
    tokenizer.save_pretrained(out_dir)
    config = RobertaConfig(
        vocab_size=len(vocab),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=MAX_POSITIONS + 2,  # RoBERTa's positions start after the pad id
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        _save_model(RobertaModel(config), out_dir)
    return out_dir


def tiny_train_params(model: str | Path, **overrides: object) -> TrainParams:
    """Small, fast TrainParams for a tiny model on CPU (every field explicit, as params.yaml gives them)."""
    values: dict[str, object] = dict(
        model=str(model),
        pooling="cls",
        max_length=16,
        batch_size=4,
        eval_batch_size=8,
        steps=3,
        epochs=0,
        dev_checkpoints=1,
        lr=1e-3,
        llrd=1.0,
        reinit_layers=0,
        head_lr=1e-2,
        weight_decay=0.01,
        adam_eps=1e-8,
        warmup_steps=1,
        scheduler="linear",
        max_grad_norm=1.0,
        dropout=0.1,
        sampler="balanced",
        device="cpu",
        precision="fp32",
        threads=1,
        save_weights=False,
    )
    return TrainParams(**{**values, **overrides})  # type: ignore[arg-type]
