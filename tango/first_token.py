"""A classifier that reads only the first token needs its last layer for that token alone.

BERT-style classifiers (BERT, MiniLM, MPNet) pool the first token's final hidden state. Every
other position of the last layer feeds nothing, yet a plain export computes its attention
output, feed-forward block and layer norms for all of them. :func:`first_token_classifier`
wraps a Hugging Face classifier so the last layer computes keys and values for every position
(the first token attends to them) and everything else for the first token only: the same
logits (to float rounding; :func:`tango.export.check_export` compares them as for any export),
with about five sixths of the last layer's work gone. On a 6-layer tier that is about a seventh
of the model, on a 12-layer one about a fourteenth (docs/models.md).

Only architectures whose layers this module knows are wrapped; any other model is exported
whole (:func:`supports` says which).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

SUPPORTED = ("bert", "mpnet")


def supports(model: Any) -> bool:
    """True where ``model`` is a sequence classifier this module can cut to its first token."""
    config = model.config
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED or getattr(config, "is_decoder", False):
        return False
    if not type(model).__name__.endswith("ForSequenceClassification"):
        return False  # token-level heads read every position
    if kind == "bert" and getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False  # relative-key attention adds terms this module does not compute
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    return base is not None and len(base.encoder.layer) >= 1


def first_token_classifier(model: Any) -> torch.nn.Module:
    """``model`` (a BERT or MPNet sequence classifier, fp32, eval) as a module giving its logits
    from ``(input_ids, attention_mask[, token_type_ids])`` with the last layer cut to the first
    token. The wrapper shares ``model``'s weights and leaves ``model`` itself unchanged."""
    if not supports(model):
        raise ValueError(
            f"no first-token form for {type(model).__name__} (model type "
            f"{getattr(model.config, 'model_type', None)!r}); known: sequence classifiers of type "
            f"{', '.join(SUPPORTED)}, encoder-only, absolute positions"
        )
    if model.config.model_type == "bert":
        return _BertFirstToken(model)
    return _MpnetFirstToken(model)


def _without_last_layer(base: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy of ``base`` (weights shared) whose encoder stops before its last layer
    and which has no pooler: it returns the last layer's input."""
    encoder = copy.copy(base.encoder)
    encoder._modules = dict(base.encoder._modules)
    encoder.layer = torch.nn.ModuleList(list(base.encoder.layer)[:-1])
    body = copy.copy(base)
    body._modules = dict(base._modules)
    body.encoder = encoder
    body.pooler = None
    return body


def _additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, T) of 1/0 -> (N, 1, 1, T) of 0 / a large negative, added to the attention scores."""
    keep = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - keep) * torch.finfo(dtype).min


def _attend(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int, bias: torch.Tensor
) -> torch.Tensor:
    """The first token's attention output: query (N, 1, H), key/value (N, T, H), bias added to
    the (N, heads, 1, T) scores -> (N, 1, H)."""
    n, length, hidden = key.shape
    size = hidden // heads

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(n, -1, heads, size).transpose(1, 2)

    scores = split(query) @ split(key).transpose(-1, -2) / math.sqrt(size) + bias
    context = torch.softmax(scores, dim=-1) @ split(value)
    return context.transpose(1, 2).reshape(n, 1, hidden)


class _FirstToken(torch.nn.Module):
    """Layers 1..L-1 whole, then the last layer for the first token; the architecture's parts
    (its projections, its attention bias, its attention output, its head) come from a subclass."""

    def __init__(self, model: Any, base: torch.nn.Module) -> None:
        super().__init__()
        self.body = _without_last_layer(base)
        self.last_layer = base.encoder.layer[-1]
        self.heads = model.config.num_attention_heads

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        given = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, **given).last_hidden_state
        first = hidden[:, :1]
        query, key, value = self.projections()
        bias = _additive_mask(attention_mask, hidden.dtype)
        position_bias = self.position_bias(hidden)
        bias = bias if position_bias is None else position_bias + bias
        context = _attend(query(first), key(hidden), value(hidden), self.heads, bias)
        attended = self.attention_output(context, first)
        return self.head(self.last_layer.output(self.last_layer.intermediate(attended), attended))

    def projections(self) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
        raise NotImplementedError

    def position_bias(self, hidden: torch.Tensor) -> torch.Tensor | None:
        return None  # absolute positions: already in the embeddings

    def attention_output(self, context: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _BertFirstToken(_FirstToken):
    def __init__(self, model: Any) -> None:
        super().__init__(model, model.bert)
        self.pooler = model.bert.pooler
        self.classifier = model.classifier

    def projections(self):
        attention = self.last_layer.attention.self
        return attention.query, attention.key, attention.value

    def attention_output(self, context, first):
        return self.last_layer.attention.output(context, first)  # dense, then LayerNorm(+ first)

    def head(self, out):
        return self.classifier(self.pooler(out))


class _MpnetFirstToken(_FirstToken):
    def __init__(self, model: Any) -> None:
        super().__init__(model, model.mpnet)
        self.encoder = model.mpnet.encoder  # its relative position bias
        self.classifier = model.classifier

    def projections(self):
        attention = self.last_layer.attention.attn
        return attention.q, attention.k, attention.v

    def position_bias(self, hidden):
        """The first token's row of MPNet's relative position bias: (1, heads, 1, T)."""
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None, :]  # key - query (at 0)
        buckets = self.encoder.relative_position_bucket(positions)
        return self.encoder.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def attention_output(self, context, first):
        attention = self.last_layer.attention
        return attention.LayerNorm(attention.attn.o(context) + first)

    def head(self, out):
        return self.classifier(out)
