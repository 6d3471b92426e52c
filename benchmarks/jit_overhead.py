"""Per-call overhead of a jitted training step: nnx.jit and hijax jax.jit vs raw JAX.

The model is a tiny MLP (width 4, batch 2), so the compiled program costs
almost nothing and the time per step is the work in front of it: flattening
arguments, the cache lookup, dispatch, writing results back.

  (a) raw   ``jax.jit`` over a dict of arrays with optax (the floor);
  (b) nnx   ``nnx.jit`` over the model and an optimizer that holds it;
  (b') nnx_ref, (b'') nnx_hijax: ``nnx.jit`` over the same model and optimizer
       built under ``var_defaults(ref=True)`` / ``var_defaults(hijax=True)``;
  (c) hijax plain ``jax.jit`` over a module and optimizer in hijax mode.

Run::

    PYTHONPATH=packages/nnx-core/src:packages/nnx-transforms/src:packages/nnx-optim/src \\
      python benchmarks/jit_overhead.py [--depths 1 10 100 300] [--steps 300]

It prints one row per depth with raw µs/step and each case's ratio to raw
(targets: (b)/(a) and (c)/(a) at most 1.3). Timings are never asserted in tests.

With Flax and Equinox installed (``hatch run bench:jit``, see hatch.toml) the same
step written with Flax NNX (``flax_jit``, ``flax_split``) and Equinox (``equinox``)
runs beside them (``benchmarks/peers.py``); ``--compile`` adds the first-call time
(trace + compile) of nnx.jit against Flax NNX's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import nnx

WIDTH, BATCH = 4, 2


class Linear(nnx.Module):
    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.w = nnx.Param(rngs.normal((din, dout)) * 0.1)
        self.b = nnx.Param(jnp.zeros((dout,)))

    def __call__(self, x):
        return x @ self.w + self.b


class MLP(nnx.Module):
    def __init__(self, depth: int, *, rngs: nnx.Rngs):
        self.layers = nnx.List([Linear(WIDTH, WIDTH, rngs=rngs) for _ in range(depth)])

    def __call__(self, x):
        for layer in self.layers:
            x = jnp.tanh(layer(x))
        return x


def _optimizer_class(standin: bool = False):
    """``nnx.Optimizer`` when nnx-optim provides it (unless ``standin``), else a stand-in."""
    try:
        if standin:
            raise ImportError
        import nnx.optim as optim

        if hasattr(optim, "Optimizer"):
            return optim.Optimizer, True
    except ImportError:
        pass

    class OptState(nnx.Variable):
        pass

    class Optimizer(nnx.Module):
        """Stand-in: optax state in Variables, ``update(model, grads)``."""

        def __init__(self, model, tx, wrt=nnx.Param):
            self.model = model
            self.tx = tx
            self.wrt = wrt
            self.step = OptState(jnp.array(0, jnp.uint32))
            params = [v[...] for v in nnx.state(model, wrt).leaves()]
            self.opt_state = nnx.data(jax.tree.map(lambda x: OptState(x), tx.init(params)))

        def update(self, model, grads=None):
            if grads is None:
                model, grads = self.model, model
            variables = nnx.state(model, self.wrt).leaves()
            params = [v[...] for v in variables]
            gs = [g[...] for g in grads.leaves()]
            opt = jax.tree.map(lambda v: v[...], self.opt_state, is_leaf=nnx.is_variable)
            updates, new_opt = self.tx.update(gs, opt, params)
            for v, p, u in zip(variables, params, updates):
                v[...] = p + u
            jax.tree.map(
                lambda v, x: v.set_value(x), self.opt_state, new_opt, is_leaf=nnx.is_variable
            )
            self.step[...] += 1

    return Optimizer, False


Optimizer, USING_NNX_OPTIM = _optimizer_class()


def use_standin_optimizer() -> None:
    """Switch to the stand-in optimizer (one OptState Variable per optax array)."""
    global Optimizer, USING_NNX_OPTIM
    Optimizer, USING_NNX_OPTIM = _optimizer_class(standin=True)


def _loss(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


def make_raw(depth: int):
    tx = optax.adam(1e-3)
    keys = jax.random.split(jax.random.key(0), depth)
    params = {
        f"l{i}": {"w": jax.random.normal(k, (WIDTH, WIDTH)) * 0.1, "b": jnp.zeros((WIDTH,))}
        for i, k in enumerate(keys)
    }
    opt_state = tx.init(params)

    def forward(params, x):
        for i in range(depth):
            p = params[f"l{i}"]
            x = jnp.tanh(x @ p["w"] + p["b"])
        return x

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((forward(p, x) - y) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = [params, opt_state]

    def run(x, y):
        state[0], state[1], loss = step(state[0], state[1], x, y)
        return loss

    return run


def make_nnx(depth: int):
    model = MLP(depth, rngs=nnx.Rngs(0))
    optimizer = Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(_loss)(model, x, y)
        optimizer.update(model, grads)
        return loss

    return lambda x, y: step(model, optimizer, x, y)


def _make_nnx_in_mode(depth: int, **mode):
    with nnx.var_defaults(**mode):
        model = MLP(depth, rngs=nnx.Rngs(0))
        optimizer = Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(_loss)(model, x, y)
        optimizer.update(model, grads)
        return loss

    return lambda x, y: step(model, optimizer, x, y)


def make_nnx_ref(depth: int):
    """(b') ``nnx.jit`` over the model and optimizer built under ``var_defaults(ref=True)``."""
    return _make_nnx_in_mode(depth, ref=True)


def make_nnx_hijax(depth: int):
    """(b'') ``nnx.jit`` over the model and optimizer built under ``var_defaults(hijax=True)``."""
    return _make_nnx_in_mode(depth, hijax=True)


def make_hijax(depth: int):
    with nnx.var_defaults(hijax=True):
        model = MLP(depth, rngs=nnx.Rngs(0))
        optimizer = Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @jax.jit
    def step(model, optimizer, x, y):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss_fn(params):
            return _loss(nnx.merge(graphdef, params, rest), x, y)

        loss, grads = jax.value_and_grad(loss_fn)(nnx.vars_as(params, mutable=False))
        optimizer.update(model, grads)
        return loss

    return lambda x, y: step(model, optimizer, x, y)


# Wall-clock by default; `--clock process` counts only this process's CPU time (all its
# threads), which leaves out the time a shared or virtual machine gives to others.
CLOCK = time.perf_counter


def time_per_step(run, x, y, steps: int, repeats: int) -> float:
    for _ in range(3):
        jax.block_until_ready(run(x, y))
    samples = []
    for _ in range(repeats):
        t0 = CLOCK()
        for _ in range(steps):
            loss = run(x, y)
        jax.block_until_ready(loss)
        samples.append((CLOCK() - t0) / steps * 1e6)
    return min(samples), statistics.median(samples)


def _peers():
    """``benchmarks/peers.py`` when Flax and Equinox are installed, else None."""
    try:
        import peers
    except ImportError:
        return None
    return peers


def first_call_s(make, depth: int, x, y) -> float:
    """Seconds of the first call of a fresh step (tracing and compiling)."""
    jax.clear_caches()
    run = make(depth)
    t0 = time.perf_counter()
    jax.block_until_ready(run(x, y))
    return time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 10, 100, 300])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-hijax", action="store_true")
    parser.add_argument(
        "--skip-modes", action="store_true", help="skip nnx.jit over ref and hijax models"
    )
    parser.add_argument(
        "--standin-optimizer",
        action="store_true",
        help="use the stand-in optimizer even when nnx.Optimizer is available",
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="skip Flax NNX and Equinox even if installed"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the first call (trace + compile) of nnx.jit against Flax NNX",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "process"),
        default="wall",
        help="wall-clock time, or this process's CPU time (steadier on a shared machine)",
    )
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter
    if args.standin_optimizer:
        use_standin_optimizer()
    peers = None if args.no_peers else _peers()
    x = jnp.ones((BATCH, WIDTH))
    y = jnp.zeros((BATCH, WIDTH))
    makers = {"raw": make_raw, "nnx": make_nnx}
    if not args.skip_modes:
        makers["nnx_ref"] = make_nnx_ref
        makers["nnx_hijax"] = make_nnx_hijax
    if not args.skip_hijax:
        makers["hijax"] = make_hijax
    if peers is not None:
        makers.update(peers.MAKERS)
    versions = (
        "" if peers is None else ", " + ", ".join(f"{k} {v}" for k, v in peers.VERSIONS.items())
    )
    print(
        f"jax {jax.__version__}{versions}, backend {jax.default_backend()}, "
        f"optimizer: {'nnx.Optimizer' if USING_NNX_OPTIM else 'stand-in'}"
    )
    others = [k for k in makers if k != "raw"]
    print(f"{'layers':>6} {'raw us':>9} " + " ".join(f"{k + '/raw':>14}" for k in others))
    for depth in args.depths:
        steps = max(20, args.steps // max(1, depth // 10))
        runs = {k: make(depth) for k, make in makers.items()}
        # interleave the measurements so that drifts of the machine hit all equally
        best = {k: float("inf") for k in runs}
        for _ in range(args.repeats):
            for k, run in runs.items():
                t, _ = time_per_step(run, x, y, steps, 1)
                best[k] = min(best[k], t)
        raw = best["raw"]
        print(
            f"{depth:>6} {raw:>9.1f} " + " ".join(f"{best[k] / raw:>14.2f}" for k in others),
            flush=True,
        )
    if args.compile:
        compiled = {"raw": make_raw, "nnx": make_nnx}
        if peers is not None:
            compiled["flax_jit"] = peers.make_flax_jit
        print("\nfirst call (trace + compile), seconds, best of 3")
        print(f"{'layers':>6} " + " ".join(f"{k:>10}" for k in compiled) + "   nnx/flax_jit")
        for depth in args.depths:
            t = {
                k: min(first_call_s(m, depth, x, y) for _ in range(3)) for k, m in compiled.items()
            }
            ratio = t["nnx"] / t["flax_jit"] if "flax_jit" in t else float("nan")
            print(
                f"{depth:>6} "
                + " ".join(f"{t[k]:>10.3f}" for k in compiled)
                + f"   {ratio:>12.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
