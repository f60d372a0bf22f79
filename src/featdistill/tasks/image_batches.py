"""Batch handling shared by tasks whose batches are ``(images, labels)`` tensor pairs."""

from __future__ import annotations

from typing import Any

import torch


class ImageLabelBatches:
    """Mixin: move ``(images, labels)`` to the device, call the model on the images, count samples."""

    def to_device(self, batch: Any, device: torch.device) -> Any:
        images, labels = batch
        return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    def forward_args(self, batch: Any) -> tuple[tuple, dict]:
        return (batch[0],), {}

    def batch_size(self, batch: Any) -> int:
        return len(batch[1])
