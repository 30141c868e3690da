"""Encoder + pooling + classification head, model-name resolution and device selection.

The head follows RoBERTa's ``RobertaClassificationHead`` (dropout -> dense -> tanh -> dropout ->
out_proj), the classifier the DML few-shot studies fine-tuned; it is put on top of any
``AutoModel`` so that MiniLM (the CPU default) and RoBERTa share one code path. The DML loss sees
the pooled encoder output (the head's input), as in the studies.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from fewshot_dml.config.sections import POOLINGS, TrainParams
from fewshot_dml.model.ref import ModelError, resolve

logger = logging.getLogger(__name__)

HEAD_FILE = "head.pt"


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) -> (B, H): first token (``cls``) or the attention-masked mean (``mean``)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    raise ValueError(f"train.pooling={pooling!r}; expected one of {list(POOLINGS)}")


class Features(NamedTuple):
    """What a training forward exposes beyond the logits: for token-level DML and for Metrix."""

    tokens: torch.Tensor  # (B, T, H) the last hidden states
    mask: torch.Tensor  # (B, T) the attention mask (1 = token, 0 = padding)
    hidden: torch.Tensor | None  # (B, T, H) the hidden states after layer k (0 = the embeddings), if asked for


class TextClassifier(nn.Module):
    """``AutoModel`` encoder, pooling, and RoBERTa's classification head."""

    def __init__(self, encoder: nn.Module, pooling: str, num_labels: int, dropout: float) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"train.pooling={pooling!r}; expected one of {list(POOLINGS)}")
        if num_labels < 2:
            raise ValueError(f"num_labels={num_labels}; expected at least 2 classes")
        self.encoder = encoder
        self.pooling = pooling
        self.num_labels = num_labels
        hidden = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, num_labels)
        # The encoder's own initialisation (transformers' _init_weights for nn.Linear).
        std = float(getattr(encoder.config, "initializer_range", 0.02))
        for layer in (self.dense, self.out_proj):
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            nn.init.zeros_(layer.bias)

    @property
    def embedding_size(self) -> int:
        return self.dense.in_features

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.dense.parameters(), *self.out_proj.parameters()]

    def forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenised batch -> (logits (B, C), pooled embedding (B, H))."""
        hidden = self.encoder(**batch).last_hidden_state
        pooled = pool(hidden, batch["attention_mask"], self.pooling)
        return self.classify(pooled), pooled

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """The head: pooled embedding (B, H) -> logits (B, C)."""
        x = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out_proj(self.dropout(x))

    def forward_features(
        self, batch: Mapping[str, torch.Tensor], hidden_layer: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, Features]:
        """As :meth:`forward`, plus the token states and, with ``hidden_layer`` = k, the hidden states
        after encoder layer k (0 = the embedding layer's output), where :meth:`encode_from` resumes."""
        out = self.encoder(**batch, output_hidden_states=hidden_layer is not None)
        mask = batch["attention_mask"]
        pooled = pool(out.last_hidden_state, mask, self.pooling)
        hidden = None if hidden_layer is None else out.hidden_states[hidden_layer]
        return self.classify(pooled), pooled, Features(out.last_hidden_state, mask, hidden)

    def _layer_list(self) -> nn.ModuleList | None:
        layers = getattr(getattr(self.encoder, "encoder", None), "layer", None)
        return layers if isinstance(layers, nn.ModuleList) else None

    @property
    def depth(self) -> int | None:
        """The number of encoder layers; None for an encoder without a BERT-style layer list."""
        layers = self._layer_list()
        return None if layers is None else len(layers)

    def _layers(self, needs: str = "resuming from a layer (Metrix input/feature mixing)") -> nn.ModuleList:
        layers = self._layer_list()
        if layers is None:
            raise ValueError(
                f"{type(self.encoder).__name__} has no `encoder.layer` list; {needs} needs a BERT-style encoder (BERT, RoBERTa, MiniLM)"
            )
        return layers

    def reinit_top_layers(self, k: int) -> None:
        """Re-initialise the top ``k`` encoder layers as the encoder initialises a new model.

        Zhang et al. (ICLR 2021, "Revisiting few-sample BERT fine-tuning"): the top layers hold
        pre-training-specific features that transfer worse than a fresh start; re-initialising them
        stabilises few-sample fine-tuning. Linear layers ~ N(0, initializer_range), LayerNorm = (1, 0),
        drawn from torch's global RNG (seed before calling); ``k = 0`` draws nothing.
        """
        if k == 0:
            return
        layers = self._layers(needs="train.reinit_layers > 0")
        if k > len(layers):
            raise ValueError(f"train.reinit_layers={k}: the encoder has {len(layers)} layers; expected 0..{len(layers)}")
        std = float(getattr(self.encoder.config, "initializer_range", 0.02))
        for layer in layers[len(layers) - k :]:
            for module in layer.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, mean=0.0, std=std)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)

    def encoder_depths(self) -> dict[str, int]:
        """Each encoder parameter's distance from the top: 0 for the top layer (and anything above
        the layer list, e.g. a pooler), ``L - 1 - i`` for layer ``i``, ``L`` for the embeddings; the
        exponent of layer-wise learning-rate decay."""
        depth = len(self._layers(needs="train.llrd < 1"))
        distances = {}
        for name, _ in self.encoder.named_parameters():
            parts = name.split(".")
            if parts[0] == "embeddings":
                distances[name] = depth
            elif parts[:2] == ["encoder", "layer"]:
                distances[name] = depth - 1 - int(parts[2])
            else:
                distances[name] = 0
        return distances

    def encode_from(self, hidden: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
        """Run the encoder's layers after ``layer`` on ``hidden`` (B, T, H) and pool: the pooled embedding
        of states that no input produced (Metrix's interpolated features). The encoder's own layers and
        attention-mask builder are reused; nothing is copied."""
        from transformers.masking_utils import create_bidirectional_mask

        layers = self._layers()
        if not 0 <= layer <= len(layers):
            raise ValueError(f"layer {layer} is beyond the encoder's {len(layers)} layers; expected 0..{len(layers)}")
        attention = create_bidirectional_mask(config=self.encoder.config, inputs_embeds=hidden, attention_mask=mask)
        for module in layers[layer:]:
            out = module(hidden, attention)
            hidden = out[0] if isinstance(out, tuple) else out
        return pool(hidden, mask, self.pooling)

    def save(self, out_dir: Path, tokenizer: object) -> None:
        """``save_pretrained`` of encoder and tokenizer, plus the head's state and shape in ``head.pt``."""
        self.encoder.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)  # type: ignore[attr-defined]
        head = {
            "pooling": self.pooling,
            "num_labels": self.num_labels,
            "dropout": self.dropout.p,
            "dense": self.dense.state_dict(),
            "out_proj": self.out_proj.state_dict(),
        }
        torch.save(head, out_dir / HEAD_FILE)

    @classmethod
    def load(cls, model_dir: Path) -> tuple[TextClassifier, object]:
        """The classifier and tokenizer :meth:`save` wrote, in eval mode."""
        from transformers import AutoModel, AutoTokenizer

        head_path = Path(model_dir) / HEAD_FILE
        if not head_path.is_file():
            raise FileNotFoundError(
                f"{model_dir}: no {HEAD_FILE}; expected a directory written by TextClassifier.save (a run trained with train.save_weights)"
            )
        head = torch.load(head_path, map_location="cpu", weights_only=True)
        model = cls(AutoModel.from_pretrained(str(model_dir)), head["pooling"], head["num_labels"], head["dropout"])
        model.dense.load_state_dict(head["dense"])
        model.out_proj.load_state_dict(head["out_proj"])
        return model.eval(), AutoTokenizer.from_pretrained(str(model_dir))


@dataclass(frozen=True)
class Pretrained:
    """``train.model``'s tokenizer and pretrained encoder, loaded once per process (the first load
    also imports the architecture's code, ~2 s); each run fine-tunes a deep copy of ``encoder``."""

    name: str
    directory: str
    tokenizer: Any
    encoder: nn.Module


def load_pretrained(model: str, directory: str) -> Pretrained:
    """Tokenizer and encoder of ``model`` (its name in params) from its resolved ``directory``."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        encoder = AutoModel.from_pretrained(directory)
    except (OSError, ValueError) as err:
        raise ModelError(
            f"train.model={model!r}: cannot load the model at {directory}; expected a transformers model directory. Loader said: {err}"
        ) from err
    logger.info("model %s: %s, hidden size %d", model, directory, encoder.config.hidden_size)
    return Pretrained(model, directory, tokenizer, encoder)


def load_classifier(
    train: TrainParams, num_labels: int, directory: str | None = None, pretrained: Pretrained | None = None
) -> tuple[TextClassifier, object]:
    """``train.model``'s encoder (a deep copy of ``pretrained``'s, or loaded from ``directory``, the
    model already resolved by :mod:`fewshot_dml.model.ref`) with a fresh head on top and the top
    ``train.reinit_layers`` layers re-initialised; and its tokenizer.

    The head (and any re-initialised layer) is drawn from torch's global RNG: seed before calling.
    Loading draws nothing from it, so a copy and a fresh load give the same model (tested).
    """
    if pretrained is None:
        pretrained = load_pretrained(train.model, resolve(train.model).directory if directory is None else directory)
        encoder = pretrained.encoder
    else:
        encoder = copy.deepcopy(pretrained.encoder)
    model = TextClassifier(encoder, train.pooling, num_labels, train.dropout)
    model.reinit_top_layers(train.reinit_layers)  # after the head: with k = 0 the RNG stream is unchanged
    return model, pretrained.tokenizer
