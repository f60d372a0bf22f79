"""A validation split carved from the training images (``data.holdout``), for choosing settings (sweeps).

``data.val_split`` stays the test set that is reported; settings are chosen on the holdout instead. The
held-out images are drawn by a generator seeded with :data:`HOLDOUT_SEED`, a constant, never
``train.seed``: every seed and every variant of a sweep is scored on the same images. With labels the draw
is stratified, so each class gives its share of the holdout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["EVALUATE_ON", "HOLDOUT_SEED", "check_evaluate_on", "holdout_size", "split_holdout"]

#: Seed of the holdout draw. A constant so that the holdout depends only on the training data.
HOLDOUT_SEED = 20230323

#: What ``build_loaders(evaluate_on=...)`` can score on: the ``data.val_split`` or the holdout.
EVALUATE_ON = ("val", "holdout")


def check_evaluate_on(evaluate_on: str, holdout: float | int | None) -> None:
    """Refuse an unknown ``evaluate_on``, and ``"holdout"`` when ``data.holdout`` is not set."""
    if evaluate_on not in EVALUATE_ON:
        raise ValueError(f"evaluate_on must be one of {EVALUATE_ON}, got {evaluate_on!r}")
    if evaluate_on == "holdout" and holdout is None:
        raise ValueError(
            "evaluating on the holdout needs data.holdout; set it to a fraction (e.g. 0.1) or a count "
            "of training images"
        )


def holdout_size(holdout: float | int, total: int) -> int:
    """Images to hold out of ``total``: a count as given, a fraction rounded half up (at least one)."""
    count = max(1, math.floor(holdout * total + 0.5)) if isinstance(holdout, float) else holdout
    if count >= total:
        raise ValueError(
            f"data.holdout {holdout} keeps out {count} of the {total} training images, leaving none to "
            f"train on; set data.holdout to a fraction in (0, 1) or a count below {total} (or raise "
            "data.limit if it is set)"
        )
    return count


def split_holdout(
    total: int, holdout: float | int, labels: Sequence[int] | torch.Tensor | None = None
) -> tuple[list[int], list[int]]:
    """Split ``range(total)`` into sorted ``(training indices, holdout indices)``.

    Without ``labels`` the holdout is a uniformly drawn subset. With ``labels`` (one per index) each class
    ``c`` of ``n_c`` images gives ``floor(n_c * k / total)`` images, and the ``k`` left over go one each to
    the classes with the largest remainders (ties: smaller label first), so the holdout has exactly ``k``
    images and every class its share; which images of a class is a random draw.
    """
    count = holdout_size(holdout, total)
    generator = torch.Generator().manual_seed(HOLDOUT_SEED)
    if labels is None:
        held = torch.randperm(total, generator=generator)[:count]
    else:
        labels = torch.as_tensor(labels)
        if labels.shape != (total,):
            raise ValueError(f"{total} images but labels of shape {tuple(labels.shape)}")
        classes, sizes = labels.unique(sorted=True, return_counts=True)
        shares = [divmod(int(n) * count, total) for n in sizes]
        quota = [share for share, _ in shares]
        by_remainder = sorted(range(len(classes)), key=lambda c: -shares[c][1])
        for c in by_remainder[: count - sum(quota)]:
            quota[c] += 1
        members = [torch.nonzero(labels == c).flatten() for c in classes]
        held = torch.cat([m[torch.randperm(len(m), generator=generator)[:q]] for m, q in zip(members, quota)])
    mask = torch.zeros(total, dtype=torch.bool)
    mask[held] = True
    return torch.nonzero(~mask).flatten().tolist(), torch.nonzero(mask).flatten().tolist()
