"""nnx.jit against raw jax.jit, alternating in one process: the ratio RESULTS.md quotes.

On a shared or noisy machine, separate runs of ``jit_overhead.py`` move by more than the
differences being measured. This script builds the raw step and the nnx step of
``jit_overhead.py`` for each depth and times them in turns (raw, nnx, raw, nnx, ...),
300 rounds (40 from 100 layers), and prints the minimum and the median of each and
their ratios. Run it with the packages importable, e.g.::

    PYTHONPATH=$(ls -d packages/*/src | tr '\\n' ':') python benchmarks/jit_ab.py 1 10 100 300

To compare two checkouts, run it once with each checkout's ``packages/*/src`` on the path.
``--modes nnx,nnx_ref,nnx_hijax`` times ``nnx.jit`` over models built in each Variable
mode (plain, ``var_defaults(ref=True)``, ``var_defaults(hijax=True)``) in the same turns,
each against the same raw step.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
import jit_overhead as jo  # noqa: E402

MAKERS = {"nnx": "make_nnx", "nnx_ref": "make_nnx_ref", "nnx_hijax": "make_nnx_hijax"}


def main(depths: list[int], modes: list[str]) -> None:
    x = jnp.ones((jo.BATCH, jo.WIDTH))
    y = jnp.zeros((jo.BATCH, jo.WIDTH))
    for depth in depths:
        runs = {"raw": jo.make_raw(depth)}
        runs.update({m: getattr(jo, MAKERS[m])(depth) for m in modes})
        for r in runs.values():
            for _ in range(20):
                jax.block_until_ready(r(x, y))
        samples: dict[str, list[float]] = {k: [] for k in runs}
        n = max(5, 40 // max(1, depth // 10))
        rounds = 300 if depth < 100 else 40
        for _ in range(rounds):
            for k, r in runs.items():
                t0 = time.perf_counter()
                for _ in range(n):
                    out = r(x, y)
                jax.block_until_ready(out)
                samples[k].append((time.perf_counter() - t0) / n * 1e6)
        mins = {k: min(v) for k, v in samples.items()}
        meds = {k: statistics.median(v) for k, v in samples.items()}
        for m in modes:
            print(
                f"{depth:4d} layers {m:>9}: min raw {mins['raw']:.1f} µs {mins[m]:.1f} µs "
                f"ratio {mins[m] / mins['raw']:.2f} | median raw {meds['raw']:.1f} "
                f"{meds[m]:.1f} ratio {meds[m] / meds['raw']:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    args = sys.argv[1:]
    modes = ["nnx"]
    if "--modes" in args:
        i = args.index("--modes")
        modes = args[i + 1].split(",")
        del args[i : i + 2]
    main([int(d) for d in args] or [1, 10, 100, 300], modes)
