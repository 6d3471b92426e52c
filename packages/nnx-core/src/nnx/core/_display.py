"""``nnx.display``: a treescope view in notebooks, the text repr elsewhere.

The top of the display code. Each nnx type renders itself in its own module
(``__repr__`` and ``__treescope_repr__``) with the generic helpers of
:mod:`nnx.core._text`; this module only chooses where the rendering goes.
Treescope (an optional dependency) is imported only here and by those
``__treescope_repr__`` methods, when a notebook shows an object.
"""

from __future__ import annotations

import sys
from typing import Any


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def display(*objs: Any) -> None:
    """Show objects: a treescope view in notebooks, the text repr elsewhere.

    Example::

        nnx.display(model)              # prints the module tree with shapes
        graphdef, state = nnx.split(model)
        nnx.display(graphdef, state)    # several objects, one after the other
    """
    if _in_notebook():
        try:
            import treescope

            for obj in objs:
                treescope.display(obj, ignore_exceptions=True)
            return
        except ImportError:
            pass
    for obj in objs:
        print(repr(obj))
