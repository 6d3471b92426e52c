"""Multi-host training with `jax.distributed`: several processes, one global mesh.

    python examples/multihost_training.py [--processes 2] [--devices-per-process 4] [--steps 20]

On a cluster every host runs the same program with its own process id; here the
script plays the cluster on this machine: it starts `--processes` copies of itself
(workers), each with `--devices-per-process` simulated CPU devices, which meet at a
coordinator on 127.0.0.1 (`jax.distributed.initialize`; CPU collectives over gloo).
Together they form one mesh of processes x devices with axes `data` and `model`:

- every process builds the same model (same seed) and `nnx.shard_state` places it on
  the global mesh as its `sharding_names` say (kernels split over `model`);
- each process holds only its own slice of the batch
  (`jax.make_array_from_process_local_data`), split over `data`;
- `nnx.jit` runs the same training step in every process; XLA does the communication.

Each worker prints its final loss and how far its parameters are from the same model
trained in one process on the whole batch; the launcher checks that all agree.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--devices-per-process", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def launch(args) -> int:
    """Start the workers on this machine and check that they agree."""
    with socket.socket() as s:  # a free port on the loopback interface
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = [
        f"--processes={args.processes}",
        f"--devices-per-process={args.devices_per_process}",
        f"--steps={args.steps}",
        f"--port={port}",
    ]
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, f"--worker={i}", *common],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(args.processes)
    ]
    results = []
    for i, w in enumerate(workers):
        try:
            out, _ = w.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for other in workers:
                other.kill()
            raise SystemExit(f"worker {i} did not finish in 300 s") from None
        lines = [line for line in out.splitlines() if line.startswith(f"[{i}]")]
        print("\n".join(lines), flush=True)
        if w.returncode != 0:
            print(out, file=sys.stderr)
            raise SystemExit(f"worker {i} failed with exit code {w.returncode}")
        results.append(next(line for line in lines if "final loss" in line).split()[-1])
    agree = len(set(results)) == 1
    print(f"all {args.processes} processes report the same final loss: {agree}")
    return 0 if agree else 1


def work(args) -> None:
    """One process of the job (what each host of a cluster runs)."""
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices_per_process}"
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{args.port}",
        num_processes=args.processes,
        process_id=args.worker,
    )
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import nnx

    me = f"[{jax.process_index()}]"
    n_model = args.devices_per_process
    auto = (jax.sharding.AxisType.Auto,) * 2
    mesh = jax.make_mesh((jax.process_count(), n_model), ("data", "model"), axis_types=auto)
    print(
        f"{me} {jax.process_count()} processes, {jax.device_count()} devices, mesh "
        f"{dict(mesh.shape)}, {jax.local_device_count()} devices here",
        flush=True,
    )

    class MLP(nnx.Module):
        def __init__(self, *, rngs: nnx.Rngs):
            init = nnx.initializers.lecun_normal()
            part = nnx.with_partitioning
            self.linear1 = nnx.Linear(16, 64, kernel_init=part(init, (None, "model")), rngs=rngs)
            self.linear2 = nnx.Linear(64, 4, kernel_init=part(init, ("model", None)), rngs=rngs)

        def __call__(self, x):
            return self.linear2(nnx.relu(self.linear1(x)))

    @nnx.jit
    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(grads)
        return loss

    rng = np.random.default_rng(0)  # every process knows the whole data set here...
    x = rng.normal(size=(64, 16)).astype(np.float32)
    y = np.sin(x[:, :4])
    rows = len(x) // jax.process_count()
    mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)

    model = MLP(rngs=nnx.Rngs(0))
    nnx.shard_state(nnx.state(model), mesh)
    batch = NamedSharding(mesh, P("data", None))
    xs = jax.make_array_from_process_local_data(batch, x[mine])  # ...but passes its slice
    ys = jax.make_array_from_process_local_data(batch, y[mine])
    kernel = model.linear1.kernel[...]
    print(
        f"{me} linear1.kernel {tuple(kernel.shape)} as {kernel.sharding.spec}, "
        f"{len(kernel.addressable_shards)} shards here of "
        f"{tuple(kernel.addressable_shards[0].data.shape)}",
        flush=True,
    )
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    losses = [float(train_step(model, optimizer, xs, ys)) for _ in range(args.steps)]

    # the same training in this process alone, on one device, for the check
    local = jax.local_devices()[0]
    reference = MLP(rngs=nnx.Rngs(0))
    ref_opt = nnx.Optimizer(reference, optax.adam(1e-2), wrt=nnx.Param)
    xl, yl = jax.device_put(x, local), jax.device_put(y, local)
    ref_losses = [float(train_step(reference, ref_opt, xl, yl)) for _ in range(args.steps)]
    # gather the sharded parameters to every process to compare them
    gathered = jax.jit(lambda s: s, out_shardings=NamedSharding(mesh, P()))(
        nnx.state(model, nnx.Param)
    )
    diff = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree.leaves(gathered), jax.tree.leaves(nnx.state(reference, nnx.Param)))
    )
    print(
        f"{me} loss {losses[0]:.4f} -> {losses[-1]:.4f}; max |parameters - one device| "
        f"= {diff:.1e}; max |loss - one device| = "
        f"{max(abs(a - b) for a, b in zip(losses, ref_losses)):.1e}",
        flush=True,
    )
    print(f"{me} final loss {losses[-1]:.6f}", flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    ARGS = _parse(sys.argv[1:])
    if ARGS.worker is None:
        sys.exit(launch(ARGS))
    work(ARGS)
