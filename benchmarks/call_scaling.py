"""How the per-call cost of nnx.jit grows with the number of Variables (DESIGN.md section 6).

Target: the overhead grows at most linearly with the number of Variables, with a
per-Variable slope within 2x of JAX's own pytree flattening. A function that reads
every Variable and returns one scalar (or also writes every Variable) is jitted over

  raw      a dict of N arrays with plain ``jax.jit`` (JAX's C++ path);
  raw->N   the same, returning N new arrays that are passed in on the next call;
  nnx      a module holding N Param Variables with ``nnx.jit``;
  list->N  plain ``jax.jit`` with the call signature nnx.jit uses inside (a list of N
           arrays in, a list of N new arrays out, fed back);
  nnx+w    the same, writing every Variable (so N values come back and are stored).

and the slope (µs per Variable, least squares over the sizes) of each is printed,
with ``boundary``: nnx's own per-call work alone (the FlattenCache hit, reading every
stored value, writing every Variable back), without the JAX call, whose time with N
buffers in and out varies by more than this between runs on a shared machine;
beside the slope of ``jax.tree.flatten`` of the dict and of a ``jax.jit`` call that
returns N arrays (what a write of every Variable costs JAX itself).

Run::

    PYTHONPATH=packages/nnx-core/src:packages/nnx-transforms/src \\
      python benchmarks/call_scaling.py [--sizes 10 100 1000 3000]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from _timing import per_call_us

import nnx


class Bag(nnx.Module):
    def __init__(self, n: int):
        self.params = nnx.List([nnx.Param(jnp.full((2,), float(i))) for i in range(n)])


def slope(ns, ts) -> float:
    return float(np.polyfit(np.asarray(ns, float), np.asarray(ts, float), 1)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 3000])
    args = parser.parse_args(argv)

    @jax.jit
    def raw_read(d):
        return sum(jnp.sum(a) for a in d.values())

    @jax.jit
    def raw_write(d):
        return {k: a + 1 for k, a in d.items()}

    @nnx.jit
    def nnx_read(bag):
        return sum(jnp.sum(p[...]) for p in bag.params)

    @nnx.jit
    def nnx_write(bag):
        for p in bag.params:
            p[...] += 1
        return bag.params[0][...][0]

    from nnx.transforms._boundary import write_back  # the write step of every transform

    def boundary(bag, cache, idx):
        prep = cache((bag,))
        leaves = prep.raw()
        write_back(prep.leaves, idx, leaves, values=False)
        return leaves[0]

    @jax.jit
    def raw_write_list(leaves, plain, plain_kw):  # noqa: ARG001 (nnx.jit's inner signature)
        return [a + 1 for a in leaves], leaves[0][0], None

    cols = ["tree.flatten", "boundary", "raw", "raw->N", "list->N", "nnx", "nnx+w"]
    rows = {c: [] for c in cols}
    print(f"jax {jax.__version__}; µs per call")
    print(f"{'N':>6} " + " ".join(f"{c:>12}" for c in cols))
    for n in args.sizes:
        d = {f"p{i}": jnp.full((2,), float(i)) for i in range(n)}
        box = [dict(d)]

        def raw_step(box=box):  # the new arrays go in next time, as in a training loop
            box[0] = raw_write(box[0])
            return box[0]["p0"]

        lbox = [list(d.values())]

        def list_step(lbox=lbox):
            lbox[0], out, _ = raw_write_list(lbox[0], (), {})
            return out

        bag = Bag(n)
        calls = max(10, 2000 // n)
        t = {
            "tree.flatten": per_call_us(lambda d=d: jax.tree.flatten(d)[0][0], calls=calls),
            "boundary": per_call_us(boundary, bag, nnx_write._prep, list(range(n)), calls=calls),
            "raw": per_call_us(raw_read, d, calls=calls),
            "raw->N": per_call_us(raw_step, calls=calls),
            "list->N": per_call_us(list_step, calls=calls),
            "nnx": per_call_us(nnx_read, bag, calls=calls),
            "nnx+w": per_call_us(nnx_write, bag, calls=calls),
        }
        for c in cols:
            rows[c].append(t[c])
        print(f"{n:>6} " + " ".join(f"{t[c]:>12.1f}" for c in cols), flush=True)
    slopes = {c: slope(args.sizes, rows[c]) for c in cols}
    print("slope µs/Variable: " + ", ".join(f"{c} {s:.3f}" for c, s in slopes.items()))
    print(
        f"boundary per Variable: {slopes['boundary']:.3f} µs "
        f"({slopes['boundary'] / slopes['tree.flatten']:.2f}x tree.flatten)"
    )
    print(
        f"nnx+w - list->N per Variable: {slopes['nnx+w'] - slopes['list->N']:.3f} µs; "
        f"nnx - raw per Variable: {slopes['nnx'] - slopes['raw']:.3f} µs "
        f"({(slopes['nnx'] - slopes['raw']) / slopes['tree.flatten']:.2f}x tree.flatten); "
        f"nnx+w - raw->N: {slopes['nnx+w'] - slopes['raw->N']:.3f} µs "
        f"({(slopes['nnx+w'] - slopes['raw->N']) / slopes['tree.flatten']:.2f}x tree.flatten)"
    )


if __name__ == "__main__":
    main()
