"""An optimizer written by hand over hijax Variables, trained under plain `jax.jit`.

    python examples/hijax_optimizer.py [--steps 200]

Under `nnx.var_defaults(hijax=True)` a Variable is itself a JAX value, so the
optimizer's state can be built the way Flax NNX's hijax guide builds it: a tree map
over `nnx.state(model, nnx.Param)` that receives each Param (a Variable, with its
metadata) and returns a Variable of momentum in its place. The update writes
`m[...]` and `p[...]` in place inside a plain `jax.jit` function, and the writes land
in the Python objects. The run is checked against `optax.sgd(lr, momentum)` over a
dict of the same arrays.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import nnx


class OptState(nnx.Variable):
    """The optimizer's own Variable kind, so filters tell it apart from the Params."""


def make_opt_state(x):
    if isinstance(x, nnx.Variable):  # a Param: keep its metadata (sharding names, ...)
        return OptState(jnp.zeros_like(x[...]), **x.get_metadata())
    return OptState(jnp.zeros_like(x))


class SGDMomentum(nnx.Pytree):
    """SGD with heavy-ball momentum (optax.sgd's): ``m = beta * m + g; p -= lr * m``."""

    def __init__(self, params: nnx.State, lr: float, momentum: float):
        self.lr = lr
        self.beta = momentum
        self.params = params  # the model's own Param Variables, shared
        self.momentum = nnx.data(jax.tree.map(make_opt_state, params))

    def update(self, grads: nnx.State) -> None:
        def step(p, m, g):
            m[...] = self.beta * m[...] + g[...]
            p[...] = p[...] - self.lr * m[...]

        # A hijax Variable is a leaf of the State that holds it, so the three trees
        # (Params, OptStates, gradients) line up and `step` receives Variables.
        jax.tree.map(step, self.params, self.momentum, grads)


class MLP(nnx.Module):
    def __init__(self, din: int, dmid: int, dout: int, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(din, dmid, rngs=rngs)
        self.linear2 = nnx.Linear(dmid, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear2(nnx.relu(self.linear1(x)))


def reference(params: dict, x, y, steps: int, lr: float, momentum: float) -> dict:
    """The same training with optax over a dict of the same arrays."""

    def loss(p):
        h = jax.nn.relu(x @ p["linear1"]["kernel"] + p["linear1"]["bias"])
        return jnp.mean((h @ p["linear2"]["kernel"] + p["linear2"]["bias"] - y) ** 2)

    tx = optax.sgd(lr, momentum=momentum)
    opt_state = tx.init(params)

    @jax.jit
    def step(p, opt_state):
        updates, opt_state = tx.update(jax.grad(loss)(p), opt_state, p)
        return optax.apply_updates(p, updates), opt_state

    for _ in range(steps):
        params, opt_state = step(params, opt_state)
    return params


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    args = parser.parse_args(argv)

    with nnx.var_defaults(hijax=True):  # Variables created here are hijax
        model = MLP(2, 32, 1, rngs=nnx.Rngs(0))
        params = nnx.state(model, nnx.Param)
        optimizer = SGDMomentum(params, args.lr, args.momentum)
    kinds = sorted({type(v).__name__ for v in jax.tree.leaves(optimizer.momentum)})
    print(f"momentum leaves: {kinds}, hijax = {optimizer.momentum['linear1']['kernel'].hijax}")
    start = jax.tree.map(jnp.array, nnx.to_pure_dict(params))  # a copy for the reference

    x = jax.random.uniform(jax.random.key(1), (128, 2), minval=-1.0, maxval=1.0)
    y = jnp.sin(3 * x[:, :1]) * jnp.cos(2 * x[:, 1:])

    @jax.jit  # plain JAX: no nnx transform anywhere
    def train_step(model, optimizer, x, y):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss_fn(params):
            return jnp.mean((nnx.merge(graphdef, params, rest)(x) - y) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(nnx.vars_as(params, mutable=False))
        optimizer.update(grads)  # writes the hijax Params and OptStates in place
        return loss

    first = float(jnp.mean((model(x) - y) ** 2))
    for step in range(1, args.steps + 1):
        loss = float(train_step(model, optimizer, x, y))
        if step == 1 or step % 50 == 0:
            print(f"step {step:4d}: loss {loss:.4f}")
    final = float(jnp.mean((model(x) - y) ** 2))
    print(f"loss {first:.4f} -> {final:.4f} after {args.steps} steps")

    expected = reference(start, x, y, args.steps, args.lr, args.momentum)
    trained = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(expected))
    )
    print(f"max |nnx - optax.sgd(momentum)| = {diff:.2e}")
    return {"first_loss": first, "final_loss": final, "max_diff": diff}


if __name__ == "__main__":
    main()
