"""How split/merge/flatten scale with model size (DESIGN.md section 6).

Run: python benchmarks/graph_split_merge.py [--depths 30,300,3000]

Prints, per depth, the time of nnx.split, nnx.merge, the FlattenCache hit
that transforms use per call, and jax.tree.flatten of the same model as a
pytree (JAX's own C++ flattening, the reference slope), in microseconds.
"""

from __future__ import annotations

import argparse
import timeit

import jax
import jax.numpy as jnp

import nnx


class Layer(nnx.Module):
    def __init__(self, key):
        self.kernel = nnx.Param(jax.random.normal(key, (4, 4)))
        self.bias = nnx.Param(jnp.zeros(4))
        self.act = jax.nn.relu


class Model(nnx.Module):
    def __init__(self, depth):
        keys = jax.random.split(jax.random.key(0), depth)
        self.layers = [Layer(k) for k in keys]


def best(f, number):
    return min(timeit.repeat(f, number=number, repeat=5)) / number * 1e6


def measure(depth: int) -> tuple[float, float, float, float]:
    model = Model(depth)
    n = max(1, 3000 // depth)
    t_split = best(lambda: nnx.split(model), n)
    g, s = nnx.split(model)
    t_merge = best(lambda: nnx.merge(g, s), n)
    cache = nnx.FlattenCache()
    cache.flatten((model,))
    t_hit = best(lambda: cache.flatten((model,)), 1000)
    t_tree = best(lambda: jax.tree.flatten(model), n)
    return t_split, t_merge, t_hit, t_tree


def main(depths):
    head = ("depth", "split", "merge", "cache hit", "tree.flatten", "split/flatten")
    print("".join(f"{h:>14}" for h in head))
    for depth in depths:
        t_split, t_merge, t_hit, t_tree = measure(depth)
        row = (f"{t_split:.0f}", f"{t_merge:.0f}", f"{t_hit:.2f}", f"{t_tree:.0f}")
        print(f"{depth:>14}" + "".join(f"{c:>14}" for c in row) + f"{t_split / t_tree:>14.2f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--depths", default="30,300,3000")
    args = p.parse_args()
    main([int(d) for d in args.depths.split(",")])
