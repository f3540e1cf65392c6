"""A tiny CIFAR-like training script: softmax regression on synthetic 10-class data.

No downloads, numpy only, a few seconds on a laptop. Run it under xpkit:
    xp run experiments/cifar/01_baseline.xp.toml
or directly (a standalone run is recorded too):
    python train.py --lr 0.1 --seed 0
"""

from __future__ import annotations

import argparse

import numpy as np

import xpkit as xp


def make_data(seed: int, n: int = 2000, dim: int = 32, classes: int = 10):
    rng = np.random.default_rng(1234)  # the same task for every seed
    centers = rng.normal(0, 1.0, size=(classes, dim))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    features = centers[labels] + rng.normal(0, 2.0, size=(n, dim))
    split = int(0.8 * n)
    return (features[:split], labels[:split]), (features[split:], labels[split:])


def accuracy(weights, features, labels) -> float:
    return float(np.mean(np.argmax(features @ weights, axis=1) == labels))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    run = xp.init(config=vars(args))
    (train_x, train_y), (test_x, test_y) = make_data(args.seed)
    rng = np.random.default_rng(args.seed)
    weights = np.zeros((train_x.shape[1], 10))
    step, best = 0, 0.0
    for epoch in range(args.epochs):
        order = rng.permutation(len(train_x))
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            logits = train_x[batch] @ weights
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            loss = -np.mean(np.log(probs[np.arange(len(batch)), train_y[batch]] + 1e-12))
            probs[np.arange(len(batch)), train_y[batch]] -= 1
            weights -= args.lr * train_x[batch].T @ probs / len(batch)
            run.log({"loss": loss}, step=step)
            step += 1
        test_acc = accuracy(weights, test_x, test_y)
        run.log({"epoch": epoch, "train_acc": accuracy(weights, train_x, train_y),
                 "test_acc": test_acc}, step=step)  # fmt: skip
        print(f"epoch {epoch:2d}  loss {loss:.3f}  test_acc {test_acc:.3f}")
        best = max(best, test_acc)
    run.summary["best_test_acc"] = best
    np.save(run.artifacts / "weights.npy", weights)
    run.finish()


if __name__ == "__main__":
    main()
