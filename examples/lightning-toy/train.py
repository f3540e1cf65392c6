"""A LightningCLI script, as written without xpkit:
`python train.py fit --config config.yaml --model.lr 0.05`. Synthetic data, a tiny
model: it trains on the CPU in seconds. Under `xp run` (app = "lightning") the config
LightningCLI saves becomes the run's config.json, and the logged loss its metrics."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LightningCLI
from torch.utils.data import DataLoader, TensorDataset

import xpkit as xp


class TinyRegressor(pl.LightningModule):
    def __init__(self, hidden: int = 4, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )
        self.run = xp.init()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.run.log({"loss": float(loss)}, step=self.global_step)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class SumData(pl.LightningDataModule):
    """y = x1 + x2 on random points: nothing to download."""

    def __init__(self, size: int = 64, batch_size: int = 16) -> None:
        super().__init__()
        self.size, self.batch_size = size, batch_size

    def train_dataloader(self) -> DataLoader:
        x = torch.randn(self.size, 2, generator=torch.Generator().manual_seed(0))
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=self.batch_size)


if __name__ == "__main__":
    LightningCLI(TinyRegressor, SumData)
