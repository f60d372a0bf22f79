"""Reading features: hooks that capture submodule outputs (or ``@input`` inputs) by dotted name.

See :mod:`featdistill.taps.selectors` for the address syntax.
"""

from .discovery import LayerOutput, trace_outputs
from .grid import prefix_tokens, tokens_to_grid
from .hooks import FeatureTaps, TapError, resolve_module, unwrap_model
from .selectors import SelectorError, TapAddress, parse_address, select

__all__ = [
    "FeatureTaps",
    "LayerOutput",
    "SelectorError",
    "TapAddress",
    "TapError",
    "parse_address",
    "prefix_tokens",
    "resolve_module",
    "select",
    "tokens_to_grid",
    "trace_outputs",
    "unwrap_model",
]
