"""The ``nnx.Carry`` marker: "threaded from step to step" in a loop's axes.

It lives in nnx-core so that every package recognises the one object by identity:
nnx-transforms' ``scan`` reads it in ``in_axes``/``out_axes``, nnx-layers' ``RNN``
in ``state_axes``, whichever of them is installed.
"""

from __future__ import annotations


class Carry:
    """Marks the loop carry: a value threaded from one step of a loop to the next.

    ``nnx.scan`` takes it in ``in_axes``/``out_axes`` (the argument and the result
    that carry from step to step), ``nnx.RNN`` in ``state_axes`` (the cell's
    Variables that carry from step to step). It is a marker: use the class itself,
    never an instance.

    >>> import nnx
    >>> nnx.Carry is nnx.core.Carry
    True
    >>> nnx.Carry()
    Traceback (most recent call last):
    ...
    TypeError: nnx.Carry is a marker: use the class itself, `in_axes=(0, nnx.Carry)`.
    """

    def __init__(self) -> None:
        raise TypeError("nnx.Carry is a marker: use the class itself, `in_axes=(0, nnx.Carry)`.")
