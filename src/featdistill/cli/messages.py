"""How the command line shows warnings: one line each, ``featdistill: warning: ...``, without source paths.

Library users keep Python's own warnings: these are installed by the CLI's ``main`` only. Warnings that an
exporter (torch.onnx, torch.jit, torch.export) gives about its own internals are counted in one line;
``--debug`` shows every warning in Python's full format instead.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parents[1]  # src/featdistill: warnings from here are ours
_WARNINGS_MODULES = ("warnings.py", "_py_warnings.py")  # Python's own frames between warn() and the hook


def _one_line(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    return "featdistill: warning: " + " ".join(str(message).split()) + "\n"


@contextmanager
def one_line_warnings(debug: bool) -> Iterator[None]:
    """Within: every warning shown prints as ``featdistill: warning: <message>`` (``debug``: Python's format).

    Only the format changes: where warnings go (stderr, or a recorder such as ``pytest.warns``) stays.
    """
    saved = warnings.formatwarning
    if not debug:
        warnings.formatwarning = _one_line
    try:
        yield
    finally:
        warnings.formatwarning = saved


def _issuer() -> Path:
    """The file of the code that called ``warnings.warn`` (not the one a ``stacklevel`` names)."""
    frame = sys._getframe(2)  # the caller of the showwarning hook
    while frame.f_back is not None and Path(frame.f_code.co_filename).name in _WARNINGS_MODULES:
        frame = frame.f_back
    return Path(frame.f_code.co_filename).resolve()


@contextmanager
def exporter_warnings(debug: bool) -> Iterator[None]:
    """Within: the exporter's own warnings are summarised in one line (``debug``: all shown in full).

    featdistill's own warnings are shown as they come; the exporter's are counted once per message and place.
    """
    if debug:
        yield
        return
    theirs: set[tuple[Any, ...]] = set()  # (category, message, file, line): as --debug would show them
    shown = warnings.showwarning

    def sort(message: Warning | str, category: type[Warning], *where: Any, **kw: Any) -> None:
        if _issuer().is_relative_to(_PACKAGE):
            shown(message, category, *where, **kw)
        else:
            theirs.add((category, str(message), *where[:2]))

    with warnings.catch_warnings():  # the filters stay as they are: hidden warnings are not counted
        warnings.showwarning = sort
        yield
    if theirs:
        count = f"{len(theirs)} warning{'s' if len(theirs) > 1 else ''}"
        print(f"featdistill: warning: the exporter gave {count} (--debug shows them)", file=sys.stderr)
