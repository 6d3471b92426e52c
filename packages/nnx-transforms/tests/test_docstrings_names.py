"""The docstring examples of jit_partial, cached_partial, make_jaxpr, tabulate and
nnx.transforms.general run and print what they show."""

from __future__ import annotations

import doctest

import pytest

import nnx
from nnx.transforms import general

OBJECTS = [
    nnx.jit_partial,
    nnx.cached_partial,
    nnx.make_jaxpr,
    nnx.tabulate,
    general.split_inputs,
]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: o.__name__)
def test_docstring_example_runs(obj):
    assert obj.__doc__ and ">>>" in obj.__doc__
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(obj, obj.__name__, globs={}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
