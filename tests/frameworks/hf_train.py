"""A tiny Hugging Face Trainer fit: a 2-layer BERT built from its config, synthetic
tokens. `--report-to` picks `callbacks=[XpCallback()]` or `report_to="xpkit"` (enable());
`--report-to none` is a script that knows nothing of xpkit; `--die-at N` SIGKILLs
attempt 1 at step N."""

import argparse
import os
import signal

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

import xpkit as xp
from xpkit.integrations import transformers as xp_hf

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--die-at", type=int, default=-1)
parser.add_argument("--report-to", choices=["callback", "xpkit", "none"], default="callback")
args = parser.parse_args()


class Tokens(torch.utils.data.Dataset):
    def __init__(self, count: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 50, (count, 12), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        ids = self.ids[index]
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "labels": int(ids[0] > 25),
        }


class DieAt(TrainerCallback):
    def on_step_end(self, train_args, state, control, **kwargs):
        if state.global_step == args.die_at and run is not None and run.attempt == 1:
            os.kill(os.getpid(), signal.SIGKILL)


run = xp.init() if args.report_to != "none" else None
torch.manual_seed(0)
model = BertForSequenceClassification(
    BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
)
callbacks = [DieAt()]
if args.report_to == "xpkit":
    xp_hf.enable()
elif args.report_to == "callback":
    callbacks.append(xp_hf.XpCallback())
training = TrainingArguments(
    output_dir=str(run.checkpoint_dir or run.dir / "hf") if run else "hf_out",
    max_steps=args.steps,
    per_device_train_batch_size=8,
    learning_rate=1e-3,
    logging_steps=5,
    save_steps=10,
    eval_strategy="steps",
    eval_steps=10,
    report_to=["xpkit"] if args.report_to == "xpkit" else "none",
    use_cpu=True,
    dataloader_pin_memory=False,
    disable_tqdm=True,
    seed=0,
    hub_token="hf_abcdefghijklmnopqrstuvwxyz0123456789",
)
trainer = Trainer(
    model=model,
    args=training,
    train_dataset=Tokens(64),
    eval_dataset=Tokens(16),
    callbacks=callbacks,
)
trainer.train(resume_from_checkpoint=True if run and run.resumed else None)
