"""Shared fixtures: determinism, few threads, and the location of the real datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture
def shared_data() -> Path:
    """The read-only real datasets beside the repository (skips the test when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def readme_python_block(marker: str) -> str:
    """The README's python example that contains ``marker`` (tests run them as written)."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    (block,) = [b for b in blocks if marker in b]
    return block
