"""Shared timing helper of the benchmark scripts (imported from this folder)."""

from __future__ import annotations

import time

import jax


def per_call_us(f, *args, calls: int = 300, repeats: int = 5) -> float:
    """Best mean time of ``f(*args)`` over ``repeats`` runs of ``calls`` calls, in µs."""
    for _ in range(5):
        jax.block_until_ready(f(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = f(*args)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / calls * 1e6)
    return best
