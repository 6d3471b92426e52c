"""Train a small CNN on scikit-learn's 8x8 digits: the nnx main demo.

    hatch run demo                              # or:
    python examples/train_digits.py [--epochs 15] [--out examples/out/digits]

No download: the 1,797 digits ship with scikit-learn. In under a minute on a laptop
CPU it reaches about 98-99% test accuracy, then writes

    <out>/checkpoint/      an orbax checkpoint of the model and its optimizer
    <out>/loss_curve.png   the training loss per step and the test accuracy per epoch

and restores the checkpoint into a fresh model and optimizer to show that it restores
the accuracy and the optimizer's step.

What it shows: a Module with Conv/Linear/Dropout layers, `nnx.Optimizer` holding
the model, a stateful `@nnx.jit` train step that returns only the loss (the model,
the optimizer and the metrics are updated in place), `nnx.metrics`, `model.train()` /
`model.eval()`, and saving/restoring an orbax checkpoint (`nnx.save_checkpoint`,
`nnx.restore_checkpoint`; see docs/guides/checkpointing.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
import optax

import nnx


class CNN(nnx.Module):
    """Two 3x3 convolutions, 2x2 average pooling, then a two-layer classifier."""

    def __init__(self, *, num_classes: int = 10, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.linear1 = nnx.Linear(4 * 4 * 64, 128, rngs=rngs)
        self.dropout = nnx.Dropout(0.3, rngs=rngs)
        self.linear2 = nnx.Linear(128, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:  # x: (batch, 8, 8, 1)
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        x = x.reshape(x.shape[0], 4, 2, 4, 2, 64).mean((2, 4))  # 2x2 average pool
        x = x.reshape(x.shape[0], -1)
        x = self.dropout(nnx.relu(self.linear1(x)))
        return self.linear2(x)


def loss_fn(model: CNN, images, labels):
    logits = model(images)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, logits


@nnx.jit
def train_step(model: CNN, optimizer: nnx.Optimizer, metrics, images, labels):
    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, images, labels)
    optimizer.update(grads)  # the optimizer holds the model: updated in place
    metrics.update(loss=loss, logits=logits, labels=labels)
    return loss


@nnx.jit
def eval_step(model: CNN, metrics, images, labels):
    loss, logits = loss_fn(model, images, labels)
    metrics.update(loss=loss, logits=logits, labels=labels)


def load_digits(seed: int = 0):
    """(train_images, train_labels, test_images, test_labels): 80/20, stratified."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]  # (n, 8, 8, 1) in [0, 1]
    labels = digits.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    return x_tr, y_tr, x_te, y_te


def evaluate(model: CNN, images, labels, batch_size: int = 256) -> dict[str, float]:
    metrics = nnx.metrics.MultiMetric(
        loss=nnx.metrics.Average("loss"), accuracy=nnx.metrics.Accuracy()
    )
    model.eval()
    for i in range(0, len(images), batch_size):
        eval_step(model, metrics, images[i : i + batch_size], labels[i : i + batch_size])
    model.train()
    return {k: float(v) for k, v in metrics.compute().items()}


def save_checkpoint(model: CNN, optimizer: nnx.Optimizer, path: Path) -> None:
    """Model and optimizer as one orbax checkpoint, keyed by path ("0/conv1/kernel")."""
    nnx.save_checkpoint(path, (model, optimizer), force=True)


def load_checkpoint(model: CNN, optimizer: nnx.Optimizer, path: Path) -> None:
    """Write the checkpoint of `save_checkpoint` into `model` and `optimizer`, in place."""
    nnx.restore_checkpoint(path, (model, optimizer))


def plot(losses: list[float], accuracies: list[float], steps_per_epoch: int, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(1, len(losses) + 1), losses, lw=1, label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    acc_ax = ax.twinx()
    epochs_at = steps_per_epoch * np.arange(1, len(accuracies) + 1)
    acc_ax.plot(epochs_at, accuracies, "o-", color="tab:orange", label="test accuracy")
    acc_ax.set_ylabel("test accuracy")
    acc_ax.set_ylim(0, 1)
    handles = ax.get_lines() + acc_ax.get_lines()
    ax.legend(handles, [h.get_label() for h in handles], loc="center right")
    ax.set_title("nnx: CNN on the 8x8 digits")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def progress_bar(total: int, disable: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the demo runs without it, just quieter
        return None
    return tqdm(total=total, unit="step", disable=disable, dynamic_ncols=True)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("examples/out/digits"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_digits(args.seed)
    steps_per_epoch = len(x_tr) // args.batch_size  # drop the last partial batch
    model = CNN(rngs=nnx.Rngs(params=args.seed, dropout=args.seed + 1))
    schedule = optax.cosine_decay_schedule(args.learning_rate, args.epochs * steps_per_epoch)
    optimizer = nnx.Optimizer(model, optax.adamw(schedule, weight_decay=1e-4))
    metrics = nnx.metrics.MultiMetric(
        loss=nnx.metrics.Average("loss"), accuracy=nnx.metrics.Accuracy()
    )
    print(
        f"train {len(x_tr)} / test {len(x_te)} digits; "
        f"{sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))):,} parameters"
    )

    rng = np.random.default_rng(args.seed)
    losses, accuracies = [], []
    bar = progress_bar(args.epochs * steps_per_epoch, disable=args.no_progress)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_tr))
        for i in range(steps_per_epoch):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            losses.append(float(train_step(model, optimizer, metrics, x_tr[idx], y_tr[idx])))
            if bar is not None:
                bar.update()
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
        train = {k: float(v) for k, v in metrics.compute().items()}
        metrics.reset()
        test = evaluate(model, x_te, y_te)
        accuracies.append(test["accuracy"])
        line = (
            f"epoch {epoch:2d}: train loss {train['loss']:.4f} acc {train['accuracy']:.4f}"
            f" | test loss {test['loss']:.4f} acc {test['accuracy']:.4f}"
        )
        if bar is not None:
            bar.set_postfix(loss=f"{train['loss']:.3f}", test_acc=f"{test['accuracy']:.3f}")
            bar.write(line)
        else:
            print(line, flush=True)
    if bar is not None:
        bar.close()
    train_seconds = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, optimizer, args.out / "checkpoint")
    plot(losses, accuracies, steps_per_epoch, args.out / "loss_curve.png")

    restored = CNN(rngs=nnx.Rngs(params=args.seed + 100, dropout=0))  # other weights
    restored_opt = nnx.Optimizer(restored, optax.adamw(schedule, weight_decay=1e-4))
    load_checkpoint(restored, restored_opt, args.out / "checkpoint")
    restored_acc = evaluate(restored, x_te, y_te)["accuracy"]

    print(
        f"test accuracy: {accuracies[-1]:.4f} after {args.epochs} epochs "
        f"in {train_seconds:.1f}s (optimizer step {int(optimizer.step[...])})"
    )
    print(f"saved {args.out / 'checkpoint'} and {args.out / 'loss_curve.png'}")
    print(
        f"restored checkpoint: test accuracy {restored_acc:.4f}, "
        f"optimizer step {int(restored_opt.step[...])}"
    )
    return {
        "test_accuracy": accuracies[-1],
        "restored_accuracy": restored_acc,
        "seconds": train_seconds,
    }


if __name__ == "__main__":
    main()
