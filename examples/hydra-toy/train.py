"""A Hydra app, as written without xpkit: `python train.py optimizer.lr=0.01 model=wide`.
Under `xp run` (app = "hydra" in the experiment file) the same app records its
metrics, and the config Hydra composed becomes the run's config.json."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import xpkit as xp


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    run = xp.init()
    trainer = xp.build(cfg.trainer)  # type-checked against the hints before anything is built
    losses = trainer.fit()
    for epoch, loss in enumerate(losses):
        run.log({"loss": loss}, step=epoch)
    run.summary["final_loss"] = losses[-1]
    print(f"model={cfg.model_name} lr={cfg.trainer.optimizer.lr} final_loss={losses[-1]:.4f}")
    return losses[-1]


if __name__ == "__main__":
    main()
