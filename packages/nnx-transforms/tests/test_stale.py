"""Nothing stale (issue #12): every change reachable from a transform's arguments is seen.

A wrapped function is built once and called twice; between the calls something
reachable from its arguments changes without any nnx object being touched (a
plain dict or list edited, an array replaced in a dict, a static setting of a
module mutated in place). The second call must compute with the new contents,
exactly as the same function run eagerly does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import Linear, add_bias

import nnx

X = jnp.array([[1.0, 2.0]])


def _lin(seed):
    return Linear(2, 1, rngs=nnx.Rngs(seed))


def _ref(m, x):
    return add_bias(x @ m.w[...], m.b[...])


# Each runner wraps `g(c, x) -> array of shape (1, 1)` in one transform ONCE and
# returns a function `call(c, x)` that runs the wrapped function and gives back an
# array that depends on everything `g` read (so a stale read shows up).
def _jit(g):
    return nnx.jit(g)


def _grad(g):
    # the gradient with respect to x depends on the module's kernel
    f = nnx.grad(lambda x, c: jnp.sum(g(c, x)), argnums=0)
    return lambda c, x: f(x, c)


def _value_and_grad(g):
    f = nnx.value_and_grad(lambda c, x: jnp.sum(g(c, x)))
    return lambda c, x: f(c, x)[0]


def _vmap(g):
    f = nnx.vmap(lambda c, x: g(c, x[None])[0], in_axes=(None, 0))
    return lambda c, x: f(c, x)


def _scan(g):
    @nnx.scan(in_axes=(None, nnx.Carry, 0), out_axes=(nnx.Carry, 0))
    def body(c, acc, x):
        y = g(c, x[None])[0]
        return acc + y, y

    return lambda c, x: body(c, jnp.zeros((1,)), x)[1]


def _remat(g):
    return nnx.remat(g)


def _checkify(g):
    f = nnx.checkify(g)
    return lambda c, x: f(c, x)[1]


RUNNERS = {
    "jit": _jit,
    "grad": _grad,
    "value_and_grad": _value_and_grad,
    "vmap": _vmap,
    "scan": _scan,
    "remat": _remat,
    "checkify": _checkify,
}


def _expected(name, g, c, x):
    """The same computation without the transform (eagerly)."""
    if name == "grad":
        return jax.grad(lambda x: jnp.sum(g(c, x)))(x)
    if name == "value_and_grad":
        return jnp.sum(g(c, x))
    return g(c, x)


@pytest.fixture(params=list(RUNNERS))
def runner(request):
    return request.param, RUNNERS[request.param]


def _check(name, g, call, c, x=X):
    np.testing.assert_allclose(
        np.asarray(call(c, x)), np.asarray(_expected(name, g, c, x)), rtol=1e-6
    )


def test_module_swapped_in_a_dict(runner):
    name, make = runner
    a, b = _lin(0), _lin(1)

    def g(c, x):
        return c["m"](x)

    call = make(g)
    c = {"m": a}
    _check(name, g, call, c)
    c["m"] = b
    _check(name, g, call, c)
    assert not np.allclose(_ref(a, X), _ref(b, X))  # the test can tell them apart


def test_module_swapped_in_a_list(runner):
    name, make = runner
    a, b = _lin(0), _lin(1)

    def g(ens, x):
        return ens[0](x) + ens[1](x)

    call = make(g)
    ens = [a, _lin(2)]
    _check(name, g, call, ens)
    ens[0] = b
    _check(name, g, call, ens)


def test_list_grows(runner):
    name, make = runner

    def g(ens, x):
        return sum(m(x) for m in ens)

    call = make(g)
    ens = [_lin(0)]
    _check(name, g, call, ens)
    ens.append(_lin(1))
    _check(name, g, call, ens)


def test_array_replaced_in_a_dict(runner):
    name, make = runner

    def g(c, x):
        return c["m"](x * c["x"])

    call = make(g)
    c = {"m": _lin(0), "x": X}
    _check(name, g, call, c)
    c["x"] = 2 * X
    _check(name, g, call, c)


def test_static_setting_replaced_in_a_dict(runner):
    name, make = runner

    def g(c, x):
        return c["m"](x) * c["scale"]

    call = make(g)
    c = {"m": _lin(0), "scale": 2.0}
    _check(name, g, call, c)
    c["scale"] = 3.0
    _check(name, g, call, c)


class Scaled(nnx.Module):
    def __init__(self):
        self.lin = _lin(0)
        self.cfg = {"scale": 2.0}  # static settings: a dict without arrays

    def __call__(self, x):
        return self.lin(x) * self.cfg["scale"]


def test_static_dict_of_a_module_mutated_in_place(runner):
    name, make = runner

    def g(m, x):
        return m(x)

    call = make(g)
    m = Scaled()
    _check(name, g, call, m)
    m.cfg["scale"] = 3.0
    _check(name, g, call, m)


def test_static_dict_inside_a_container_of_modules(runner):
    name, make = runner

    def g(c, x):
        return c["m"](x) * c["cfg"]["scale"]

    call = make(g)
    c = {"m": _lin(0), "cfg": {"scale": 2.0}}
    _check(name, g, call, c)
    c["cfg"]["scale"] = 5.0
    _check(name, g, call, c)


def test_writes_go_to_the_module_now_in_the_dict():
    a, b = _lin(0), _lin(1)

    @nnx.jit
    def f(c):
        c["m"].w[...] = c["m"].w[...] + 1.0

    c = {"m": a}
    f(c)
    ka, kb = np.asarray(a.w[...]), np.asarray(b.w[...])
    c["m"] = b
    f(c)
    np.testing.assert_allclose(a.w[...], ka)
    np.testing.assert_allclose(b.w[...], kb + 1.0)


def test_reused_grad_fn_sees_the_swapped_module():
    a, b = _lin(0), _lin(1)
    grad_fn = nnx.grad(lambda c, x: jnp.sum(c["m"](x) ** 2))
    c = {"m": a}
    grad_fn(c, X)
    c["m"] = b
    g = grad_fn(c, X)
    want = jax.grad(lambda w: jnp.sum(add_bias(X @ w, b.b[...]) ** 2))(b.w[...])
    np.testing.assert_allclose(g["m"]["w"][...], want, rtol=1e-6)
    assert nnx.flatten(g).graphdef.num_leaves == 2


def test_cache_hit_stays_cheap_for_modules():
    """Plain module arguments still hit the cache (no re-flatten per call)."""
    cache = nnx.FlattenCache()
    m = _lin(0)
    flat = cache.flatten((m,))
    assert cache.flatten((m,)) is flat
    m.w[...] = m.w[...] * 2  # a value write is not a structural change
    assert cache.flatten((m,)) is flat


def test_flatten_cache_sees_container_edits():
    cache = nnx.FlattenCache()
    a, b = _lin(0), _lin(1)
    c = {"m": a, "x": X}
    flat = cache.flatten((c,))
    c["m"] = b
    flat2 = cache.flatten((c,))
    assert flat2 is not flat and flat2.nodes[0] is b
    c["x"] = 2 * X
    flat3 = cache.flatten((c,))
    # an array replaced in a plain container: no re-flatten, the leaf is the new array
    assert flat3 is flat2
    assert any(leaf is c["x"] for leaf in flat3.leaves)
    c["extra"] = 1
    assert cache.flatten((c,)) is not flat3
