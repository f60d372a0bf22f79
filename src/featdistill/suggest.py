"""The one "did you mean" hint of every refusal of an unknown name (config keys, models, layers, options)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

_LISTED = 20  # a longer list of valid choices is cut, with the count of the rest


def did_you_mean(
    word: str, choices: Iterable[str], *, many: int = 1, otherwise: str | None = None, prefix: str = ""
) -> str:
    """The tail of an "unknown name" message: ``"; did you mean 'x'?"``, else ``"; valid: a, b, c"``.

    ``many`` closest choices are named (one by default); when none is close, ``otherwise`` replaces the list of
    valid choices (for choices too many to list, e.g. every layer of a model). ``prefix`` (e.g. ``"train."``)
    is put before each named choice but left out of the comparison, so a section's name does not make every
    key of the section look close.
    """
    options = [str(choice) for choice in choices]
    close = difflib.get_close_matches(str(word), options, n=many, cutoff=0.5)
    if close:
        *first, last = [repr(prefix + c) for c in close]
        return f"; did you mean {', '.join(first) + ' or ' if first else ''}{last}?"
    if otherwise is not None:
        return f"; {otherwise}"
    listed = ", ".join(prefix + c for c in options[:_LISTED])
    rest = len(options) - _LISTED
    return f"; valid: {listed}" + (f" and {rest} more" if rest > 0 else "")
