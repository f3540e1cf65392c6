"""A tiny Lightning fit on synthetic data, logged with XpLogger. Run by the tests under
`xp run` and by workers; `--die-at N` SIGKILLs attempt 1 at step N (a lost machine)."""

import argparse
import os
import signal

import torch
from torch.utils.data import DataLoader, TensorDataset

PACKAGE = os.environ.get("LIGHTNING_PACKAGE", "lightning")
if PACKAGE == "pytorch_lightning":
    import pytorch_lightning as L

    from xpkit.integrations.pytorch_lightning import XpLogger
else:
    import lightning.pytorch as L

    from xpkit.integrations.lightning import XpLogger

import xpkit as xp  # noqa: E402  (after the package choice above)

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--hidden", type=int, default=8)
parser.add_argument("--die-at", type=int, default=-1)
parser.add_argument("--logger", choices=["xp", "csv"], default="xp")  # csv: Lightning's own
args = parser.parse_args()


class Tiny(L.LightningModule):
    def __init__(self, hidden: int, lr: float, optimizer: dict) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
        )

    def training_step(self, batch, index):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, index):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class DieAt(L.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, index):
        run = xp.current_run()
        if trainer.global_step == args.die_at and run is not None and run.attempt == 1:
            os.kill(os.getpid(), signal.SIGKILL)


torch.manual_seed(0)
x = torch.randn(64, 4)
data = TensorDataset(x, x.sum(1, keepdim=True))
run = xp.init()
logger = XpLogger() if args.logger == "xp" else L.loggers.CSVLogger("csv_logs")
trainer = L.Trainer(
    max_steps=args.steps,
    logger=logger,
    log_every_n_steps=1,
    val_check_interval=10,
    check_val_every_n_epoch=None,
    enable_progress_bar=False,
    enable_model_summary=False,
    callbacks=[L.callbacks.ModelCheckpoint(every_n_train_steps=10, save_last=True), DieAt()],
    accelerator="cpu",
)
model = Tiny(args.hidden, args.lr, {"name": "sgd", "momentum": 0.0})
trainer.fit(
    model,
    DataLoader(data, batch_size=8, shuffle=True),
    DataLoader(data, batch_size=32),
    ckpt_path="last" if run.resumed else None,
)
