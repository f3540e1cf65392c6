"""Trains from a typed config: `xp run experiments/cifar/02_typed.xp.toml`.

The experiment's [config] is resolved by xp (grid paths, --set, ${...}) and written to
the run's config.json; `xp.build` type-checks it against models.py and builds it.
"""

from __future__ import annotations

import numpy as np

import xpkit as xp


def main() -> None:
    run = xp.init()
    trainer = xp.build(run.config)["trainer"]
    (train_x, train_y), (test_x, test_y) = trainer.data.train, trainer.data.test
    rng = np.random.default_rng(trainer.seed)
    weights = np.zeros((train_x.shape[1], 10))
    step = 0
    for epoch in range(trainer.epochs):
        lr = trainer.optimizer.rate(epoch, trainer.epochs)
        for _ in range(0, len(train_x), trainer.batch_size):
            batch = rng.permutation(len(train_x))[: trainer.batch_size]
            logits = train_x[batch] @ weights
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            loss = -np.mean(np.log(probs[np.arange(len(batch)), train_y[batch]] + 1e-12))
            probs[np.arange(len(batch)), train_y[batch]] -= 1
            weights -= lr * train_x[batch].T @ probs / len(batch)
            run.log({"loss": float(loss), "lr": lr}, step=step)
            step += 1
        test_acc = float(np.mean(np.argmax(test_x @ weights, axis=1) == test_y))
        run.log({"test_acc": test_acc, "epoch": epoch}, step=step)
        print(f"epoch {epoch:2d}  lr {lr:.4f}  loss {loss:.3f}  test_acc {test_acc:.3f}")
    run.finish()


if __name__ == "__main__":
    main()
