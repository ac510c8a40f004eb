"""PyTorch: a Hugging Face sequence classifier in fp32, bf16 weights, or bf16 autocast."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from tango.hardware import bf16_supported, set_torch_threads


class TorchRuntime:
    """Runs a Hugging Face sequence classifier in PyTorch: fp32, bf16 weights, or bf16 autocast.

    ``bf16`` casts the weights once at load (logits back to fp32); ``bf16-autocast`` keeps fp32
    weights and lets autocast cast them on every batch: slower, but its fp32 accumulation keeps
    more models' predictions where ``tango probe`` finds the cast-once model drifts. ``auto``
    here = autocast where the CPU has fast bf16, else fp32 (``Tier.from_pretrained`` resolves
    ``auto`` from the directory's probe record first).
    """

    def __init__(
        self, model_dir: Path, threads: int | None = None, precision: str = "auto", device: str = "cpu"
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification

        set_torch_threads(threads)  # process-wide, and only when asked for: see set_torch_threads
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval().to(device)
        self.device = device
        if precision == "auto":
            precision = "bf16-autocast" if bf16_supported() else "fp32"
        if precision == "bf16":
            self.model.to(torch.bfloat16)
        self.precision = precision
        self.bf16 = precision == "bf16-autocast"  # autocast on every batch
        self.input_names = tuple(
            name
            for name in ("input_ids", "attention_mask", "token_type_ids")
            if name in inspect.signature(self.model.forward).parameters
        )
        names = {"bf16": "bf16 weights", "bf16-autocast": "bf16 autocast"}
        self.description = f"pytorch ({names.get(precision, 'fp32')})"

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        inputs = {
            name: torch.from_numpy(batch[name]).to(self.device) for name in self.input_names if name in batch
        }
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        # cache_enabled=False: under inference_mode the autocast weight cache grows with every
        # new batch shape (measured: +580 MB over 1M rows); each weight is used once per call anyway.
        autocast = torch.autocast(device_type, torch.bfloat16, enabled=self.bf16, cache_enabled=False)
        with torch.inference_mode(), autocast:
            logits = self.model(**inputs).logits
        return logits.float().cpu().numpy()  # bf16 weights give bf16 logits
