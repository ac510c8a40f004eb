"""A Hugging Face encoder with a classifier (an *exit*) on several of its layers.

The encoder's own ``forward`` runs every layer. Here the embeddings run first and then the layers
one *segment* at a time (a segment = the layers after one exit up to and including the next), so
that inference can take finished rows out of the batch between segments (compaction) and SWEET
training can cut the gradient between segments.

Supported encoders: those with ``.embeddings`` and ``.encoder.layer`` whose layers take
``(hidden_states, attention_mask=...)`` -- BERT, RoBERTa, XLM-R, MiniLM -- and MPNet, whose layers
also take the relative ``position_bias`` the encoder computes once per sequence length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask


def parse_exits(exits: str | Sequence[int], num_layers: int) -> tuple[int, ...]:
    """``"all"``, ``"1,2,4"`` or ``[1, 2, 4]`` -> sorted 1-based layers; the last layer is added."""
    if isinstance(exits, str):
        if exits.strip() == "all":
            return tuple(range(1, num_layers + 1))
        try:
            exits = [int(part) for part in exits.split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                f"exits must be 'all' or comma-separated layer numbers like '1,2,4,6'; got {exits!r}"
            ) from None
    layers = sorted({int(layer) for layer in exits} | {num_layers})
    if layers[0] < 1 or layers[-1] > num_layers:
        raise ValueError(f"exit layers must lie in 1..{num_layers} (1-based); got {layers}")
    return tuple(layers)


POOLINGS = ("mean", "cls")


def pool(h: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, C) hidden states -> (B, C) sentence vectors.

    ``mean`` averages the real tokens (padding excluded) as one batched matmul of the 0/1 mask
    with ``h``: the matmul kernels accumulate in fp32 even for bf16 ``h`` (oneDNN/AMX, cuBLAS),
    so bf16 rounding does not grow with length, and no fp32 copy of ``h`` is made. ``cls`` takes
    the first token. Mean is the default because CLS carries no information at the low layers of
    encoders pretrained with mean pooling (sentence-transformers MiniLM / MPNet: CLS is the same
    vector for every input up to layer 4 of MiniLM-L6, see docs/models.md), so exits there stay
    at chance.
    """
    if pooling == "cls":
        return h[:, 0]
    weights = attention_mask.to(h.dtype).unsqueeze(1)  # (B, 1, T)
    summed = torch.bmm(weights, h).squeeze(1)  # (B, C)
    counts = attention_mask.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
    return summed / counts.to(summed.dtype)


class ExitHead(nn.Module):
    """Pooled hidden state -> dense + tanh -> dropout -> linear: BERT's pooler plus a classifier."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, K)
        return self.classifier(self.dropout(torch.tanh(self.dense(cls))))


class MultiExitModel(nn.Module):
    """An encoder (``AutoModel``) with one :class:`ExitHead` per exit layer.

    ``forward`` computes every exit (training, calibration); ``early_exit`` stops each row at its
    first confident exit, breadth-first across the whole input (schedule.py).
    """

    def __init__(
        self,
        encoder: PreTrainedModel,
        exits: str | Sequence[int],
        num_labels: int,
        pooling: str = "mean",
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
        layers = getattr(getattr(encoder, "encoder", None), "layer", None)
        if not hasattr(encoder, "embeddings") or layers is None:
            raise ValueError(
                f"{type(encoder).__name__} is not supported: early exit needs an encoder with "
                "`.embeddings` and `.encoder.layer` (BERT, RoBERTa, XLM-R, MiniLM, MPNet)"
            )
        if num_labels < 2:
            raise ValueError(f"early exit needs at least 2 labels; got {num_labels}")
        config = encoder.config
        self.encoder = encoder
        self.exits = parse_exits(exits, config.num_hidden_layers)  # 1-based layer numbers
        self.pooling = pooling
        # MPNet adds a relative position bias to every layer's attention scores
        self._relative_bias = hasattr(encoder.encoder, "compute_position_bias")
        dropout = getattr(config, "classifier_dropout", None) or config.hidden_dropout_prob
        self.heads = nn.ModuleList(ExitHead(config.hidden_size, num_labels, dropout) for _ in self.exits)

    @property
    def num_labels(self) -> int:
        return self.heads[0].classifier.out_features

    def segments(self) -> list[tuple[int, int]]:
        """0-based half-open layer ranges, one per exit: (1, 2, 4) -> [(0, 1), (1, 2), (2, 4)]."""
        starts = (0, *self.exits[:-1])
        return list(zip(starts, self.exits, strict=True))

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """(B, T) token ids -> (B, T, C) embeddings."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.encoder.embeddings(input_ids=input_ids, **extra)

    def run_segment(
        self, h: torch.Tensor, attention_mask: torch.Tensor, start: int, stop: int
    ) -> torch.Tensor:
        """Run layers ``start..stop-1`` on h (B, T, C) with the padding mask (B, T)."""
        mask, bias = self.layer_mask(h, attention_mask), self.position_bias(h.shape[1], h.device)
        return self.run_layers(h, mask, bias, start, stop)

    def layer_mask(
        self, h: torch.Tensor, attention_mask: torch.Tensor, padded: bool = True
    ) -> torch.Tensor | None:
        """The mask the layers take, from h (B, T, C) and the padding mask (B, T).

        Its format (additive float, boolean, or None) follows ``config._attn_implementation``.
        ``padded=False`` says no row has padding (the scheduler knows it without a device sync):
        the layers then take None, as they do for a batch of one.
        """
        if not padded:
            return None
        return create_bidirectional_mask(
            config=self.encoder.config, inputs_embeds=h, attention_mask=attention_mask
        )

    def position_bias(self, length: int, device: torch.device) -> torch.Tensor | None:
        """MPNet's relative position bias, (1, H, T, T); None for encoders without one.

        It depends only on the length, and its top-left t x t block is the bias of length t, so
        the scheduler builds it once per call and slices it for each batch.
        """
        if not self._relative_bias:
            return None
        shape_only = torch.empty(1, length, 0, device=device)  # only its size and device are read
        return self.encoder.encoder.compute_position_bias(shape_only)  # (1, H, T, T)

    def run_layers(
        self,
        h: torch.Tensor,
        layer_mask: torch.Tensor | None,
        position_bias: torch.Tensor | None,
        start: int,
        stop: int,
    ) -> torch.Tensor:
        """Layers ``start..stop-1`` on h (B, T, C) with a ready :meth:`layer_mask` and bias."""
        extra = {} if position_bias is None else {"position_bias": position_bias}
        for layer in self.encoder.encoder.layer[start:stop]:
            out = layer(h, attention_mask=layer_mask, **extra)
            h = out[0] if isinstance(out, tuple) else out  # MPNet returns a tuple, BERT a tensor
        return h

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        detach_between_exits: bool = False,
    ) -> torch.Tensor:
        """Logits of every exit, (E, B, K).

        ``detach_between_exits`` (SWEET) cuts the gradient at each segment's input, so exit i's
        loss only reaches the layers between exit i-1 and exit i (and head i).
        """
        h = self.embed(input_ids, token_type_ids)  # (B, T, C)
        logits = []
        for head, (start, stop) in zip(self.heads, self.segments(), strict=True):
            if detach_between_exits and start > 0:
                h = h.detach()
            h = self.run_segment(h, attention_mask, start, stop)
            logits.append(head(pool(h, attention_mask, self.pooling)))  # (B, K)
        return torch.stack(logits)
