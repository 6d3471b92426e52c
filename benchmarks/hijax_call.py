"""Where the per-call time of a plain ``jax.jit`` over mutable Variables goes.

Case (c) of ``jit_overhead.py`` (a plain ``jax.jit`` over a hijax module) costs several
times raw JAX. This isolates JAX's own per-call cost for mutable arguments from
everything nnx does, with a jitted ``x += 1`` over N arrays of 4 floats:

  raw        N plain arrays in, N arrays out (JAX's C++ fast path);
  hijax xN   N hijax Variables, each written in place;
  hijax x1   one hijax Variable whose value is a list of N arrays;
  ref xN     N ref Variables (``jax.Ref``), each written in place;
  nnx.jit    N plain Variables through ``nnx.jit`` (if nnx-transforms is installed).

Run::

    PYTHONPATH=packages/nnx-core/src:packages/nnx-transforms/src \\
      python benchmarks/hijax_call.py [--sizes 1 8 64 256]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from _timing import per_call_us

import nnx


@jax.jit
def _raw(arrays):
    return [a + 1 for a in arrays]


@jax.jit
def _inc_each(variables):
    for v in variables:
        v[...] += 1
    return variables[0][...]


@jax.jit
def _inc_list(v):
    v[...] = [a + 1 for a in v[...]]
    return v[...][0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64, 256])
    args = parser.parse_args(argv)
    try:
        inc_nnx = nnx.jit(lambda vs: [v.__iadd__(1) for v in vs][0][...])
    except AttributeError:
        inc_nnx = None
    cols = ["raw", "hijax xN", "hijax x1", "ref xN"] + (["nnx.jit"] if inc_nnx else [])
    print(f"jax {jax.__version__}; µs per call")
    print(f"{'N':>5} " + " ".join(f"{c:>10}" for c in cols))
    for n in args.sizes:
        arrays = [jnp.ones((4,)) for _ in range(n)]
        row = [
            per_call_us(_raw, arrays),
            per_call_us(_inc_each, [nnx.Variable(a, hijax=True) for a in arrays]),
            per_call_us(_inc_list, nnx.Variable(list(arrays), hijax=True)),
            per_call_us(_inc_each, [nnx.Variable(a, ref=True) for a in arrays]),
        ]
        if inc_nnx:
            row.append(per_call_us(inc_nnx, [nnx.Variable(a) for a in arrays]))
        print(f"{n:>5} " + " ".join(f"{t:>10.0f}" for t in row), flush=True)


if __name__ == "__main__":
    main()
