"""Data- and model-parallel training on a device mesh, checked against one device.

    python examples/sharded_training.py [--devices 8] [--steps 50]

Without accelerators, JAX simulates the devices on the CPU (`--devices` sets
`--xla_force_host_platform_device_count` before JAX starts). The mesh has a `data` axis
(the batch is split across it) and a `model` axis (each kernel is split across it, as
its `sharding_names` say). The steps:

1. layers get `sharding_names` from `nnx.with_partitioning(init, names)`;
2. `nnx.shard_state` puts every Variable on the mesh as its names say, and the
   optimizer's state, made from the sharded parameters, follows them;
3. `nnx.jit` runs the training step; XLA partitions it from the input shardings;
4. the result is compared with the same model trained on one device;
5. model and optimizer are saved as an orbax checkpoint (`nnx.save_checkpoint`) and
   restored into a fresh pair created sharded under `jax.set_mesh(mesh)`: each array
   goes back to its shards.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8, help="simulated CPU devices (even)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--ckpt-dir", default=None, help="where to save (default: a temp dir)")
    return parser.parse_args(argv)


ARGS = _parse(sys.argv[1:] if __name__ == "__main__" else [])
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={ARGS.devices}"
    ).strip()

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import nnx


def partitioned(init, *names):
    return nnx.with_partitioning(init, names)


class MLP(nnx.Module):
    """Two Linear layers whose hidden dimension is split over the `model` axis."""

    def __init__(self, din: int, dmid: int, dout: int, *, rngs: nnx.Rngs):
        kernel = nnx.initializers.lecun_normal()
        self.linear1 = nnx.Linear(
            din,
            dmid,
            kernel_init=partitioned(kernel, None, "model"),
            bias_init=partitioned(nnx.initializers.zeros_init(), "model"),
            rngs=rngs,
        )
        self.linear2 = nnx.Linear(
            dmid, dout, kernel_init=partitioned(kernel, "model", None), rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear2(nnx.relu(self.linear1(x)))


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array):
    def loss_fn(model):
        return jnp.mean((model(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(grads)
    return loss


def train(model: MLP, x, y, steps: int) -> tuple[list[float], nnx.Optimizer]:
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    return [float(train_step(model, optimizer, x, y)) for _ in range(steps)], optimizer


def describe(v: nnx.Variable) -> str:
    value = v[...]
    shards = {tuple(s.data.shape) for s in value.addressable_shards}
    return f"{tuple(value.shape)} as {value.sharding.spec}, per-device shard {shards.pop()}"


def main(args=ARGS) -> None:
    n = jax.device_count()
    if n < 2 or n % 2:
        raise SystemExit(f"needs an even number of devices, have {n}")
    # Auto axes: XLA propagates the shardings through the program (GSPMD)
    auto = (jax.sharding.AxisType.Auto,) * 2
    mesh = jax.make_mesh((2, n // 2), ("data", "model"), axis_types=auto)
    print(f"{n} devices, mesh {dict(mesh.shape)}")

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 16)), jnp.float32)
    y = jnp.asarray(np.sin(np.asarray(x) @ rng.normal(size=(16, 4))), jnp.float32)

    reference = MLP(16, 64, 4, rngs=nnx.Rngs(0))  # the same numbers, on one device
    model = MLP(16, 64, 4, rngs=nnx.Rngs(0))
    nnx.shard_state(nnx.state(model), mesh)  # every Variable as its sharding_names say
    xs = jax.device_put(x, NamedSharding(mesh, P("data", None)))  # batch over `data`
    ys = jax.device_put(y, NamedSharding(mesh, P("data", None)))
    print("linear1.kernel:", describe(model.linear1.kernel))
    print("linear2.kernel:", describe(model.linear2.kernel))

    losses, optimizer = train(model, xs, ys, args.steps)
    ref_losses, _ = train(reference, x, y, args.steps)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} after {args.steps} steps")
    print("after training, linear1.kernel:", describe(model.linear1.kernel))
    # Adam's moments of linear1.kernel live where the kernel lives
    moments = [
        a for a in jax.tree.leaves(nnx.state(optimizer, nnx.OptState)) if a.shape == (16, 64)
    ]
    specs = sorted({str(a.sharding.spec) for a in moments})
    print(f"optimizer moments of linear1.kernel: {len(moments)}, sharded as {', '.join(specs)}")
    diff = max(
        float(jnp.max(jnp.abs(a[...] - b[...])))
        for a, b in zip(
            nnx.state(model, nnx.Param).leaves(), nnx.state(reference, nnx.Param).leaves()
        )
    )
    print(f"max |sharded - one device| over the parameters = {diff:.2e}")
    print(f"max |loss difference| = {max(abs(a - b) for a, b in zip(losses, ref_losses)):.2e}")

    # 5. save on the mesh, restore on the mesh
    ckpt_dir = Path(args.ckpt_dir or tempfile.mkdtemp()) / "sharded"
    nnx.save_checkpoint(ckpt_dir, (model, optimizer), force=True)
    with jax.set_mesh(mesh):  # eager sharding: the fresh model is created sharded
        fresh = MLP(16, 64, 4, rngs=nnx.Rngs(1))
    fresh_opt = nnx.Optimizer(fresh, optax.adam(1e-2), wrt=nnx.Param)
    nnx.restore_checkpoint(ckpt_dir, (fresh, fresh_opt))
    restored_diff = max(
        float(jnp.max(jnp.abs(a[...] - b[...])))
        for a, b in zip(nnx.state(fresh).leaves(), nnx.state(model).leaves())
    )
    print("restored checkpoint, linear1.kernel:", describe(fresh.linear1.kernel))
    print(
        f"max |restored - trained| = {restored_diff:.2e}, optimizer step {int(fresh_opt.step[...])}"
    )


if __name__ == "__main__":
    main()
