"""Framework integrations for `make bench`: a Lightning fit of a tiny model for 2,000
steps, logging every step, with XpLogger vs CSVLogger vs MLFlowLogger vs no logger; a
Hugging Face Trainer for 2,000 steps, logging every step, with XpCallback vs
report_to="none" vs report_to="mlflow". Each variant runs in its own process (fresh
imports), variants alternate within a repetition; the figure is the fit alone.

Standalone: `python benchmarks/bench_integrations.py --out BENCHMARKS.md` replaces this
section of BENCHMARKS.md (what `make bench` would write there)."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from bench_proc import splice

LIGHTNING = textwrap.dedent("""\
    import os, sys, time
    import torch
    import lightning.pytorch as L
    from torch.utils.data import DataLoader, TensorDataset
    variant, steps, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"lr": 0.01, "hidden": 8})
            self.net = torch.nn.Linear(4, 1)
        def training_step(self, batch, index):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train/loss", loss)
            return loss
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    if variant == "none":
        logger = False
    elif variant == "csv":
        logger = L.loggers.CSVLogger(work)
    elif variant == "mlflow":
        logger = L.loggers.MLFlowLogger(tracking_uri=f"sqlite:///{work}/mlflow.db")
    else:
        import xpkit as xp
        from xpkit.integrations.lightning import XpLogger
        xp.init()  # the run exists before fit, as under `xp run`
        logger = XpLogger()
    x = torch.randn(64, 4)
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
    trainer = L.Trainer(max_steps=steps, logger=logger, log_every_n_steps=1, accelerator="cpu",
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    started = time.perf_counter()
    trainer.fit(Tiny(), data)
    print("FIT", time.perf_counter() - started)
    """)

HF = textwrap.dedent("""\
    import os, sys, time
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    variant, steps, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    class Tokens(torch.utils.data.Dataset):
        def __init__(self):
            self.ids = torch.randint(1, 50, (64, 8), generator=torch.Generator().manual_seed(0))
        def __len__(self):
            return len(self.ids)
        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "labels": int(self.ids[i][0] > 25)}

    callbacks = []
    if variant == "xpkit":
        import xpkit as xp
        from xpkit.integrations.transformers import XpCallback
        xp.init()  # the run exists before training, as under `xp run`
        callbacks = [XpCallback()]
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
    model = BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
        intermediate_size=8, max_position_embeddings=8, num_labels=2))
    report_to = "mlflow" if variant == "mlflow" else "none"
    args = TrainingArguments(output_dir=f"{work}/out", max_steps=steps, logging_steps=1,
                             save_strategy="no", report_to=report_to,
                             per_device_train_batch_size=8, use_cpu=True, disable_tqdm=True,
                             dataloader_pin_memory=False)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=callbacks)
    started = time.perf_counter()
    trainer.train()
    print("FIT", time.perf_counter() - started)
    """)

LIGHTNING_VARIANTS = {"none": "no logger", "csv": "`CSVLogger`", "xpkit": "`XpLogger`",
                      "mlflow": "`MLFlowLogger` (sqlite)"}  # fmt: skip
HF_VARIANTS = {"none": '`report_to="none"`', "xpkit": "`callbacks=[XpCallback()]`",
               "mlflow": '`report_to="mlflow"` (sqlite)'}  # fmt: skip


def fit_seconds(script: Path, variant: str, steps: int, work: Path) -> float:
    folder = Path(tempfile.mkdtemp(dir=work))
    env = {**os.environ, "XP_RUNS": str(folder / "runs"), "XP_CACHE_DIR": str(folder / "cache"),
           "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}  # fmt: skip
    env.pop("XP_RUN_DIR", None)
    # cwd: the git project holding the scripts (a standalone xpkit run records its code)
    done = subprocess.run([sys.executable, str(script), variant, str(steps), str(folder)],
                          cwd=work, env=env, capture_output=True, text=True)  # fmt: skip
    found = re.search(r"^FIT ([0-9.]+)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not found:
        raise SystemExit(
            f"{script.name} {variant} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    return float(found.group(1))


def scenario_integrations(work: Path, reps: int, steps: int = 2000) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    scripts = {"lightning": work / "bench_lightning.py", "hf": work / "bench_hf.py"}
    scripts["lightning"].write_text(LIGHTNING)
    scripts["hf"].write_text(HF)
    (work / ".gitignore").write_text("tmp*/\n")
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b",
                                                     "commit", "-qm", "bench"]):  # fmt: skip
        subprocess.run(["git", *command], cwd=work, check=True)
    results: dict[str, Any] = {"steps": steps, "reps": reps}
    for name, variants in (("lightning", LIGHTNING_VARIANTS), ("hf", HF_VARIANTS)):
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(reps):
            for variant in variants:
                times[variant].append(fit_seconds(scripts[name], variant, steps, work))
        results[name] = {v: statistics.median(t) for v, t in times.items()}
    return results


def render_integrations(r: dict[str, Any]) -> list[str]:
    steps = r["steps"]
    lines = [f"## 9. Framework integrations ({steps:,} steps, a log every step)", ""]
    tables = (
        ("lightning", "Lightning `Trainer.fit`, tiny linear model", LIGHTNING_VARIANTS),
        ("hf", "Hugging Face `Trainer.train`, 1-layer BERT from its config", HF_VARIANTS),
    )
    for name, title, variants in tables:
        medians = r[name]
        base = medians["none"]
        lines += [f"**{title}**", "", "| logging | fit s | per step, over no logging |",
                  "| --- | ---: | ---: |"]  # fmt: skip
        for variant, label in variants.items():
            extra = (medians[variant] - base) / steps * 1e6
            lines.append(f"| {label} | {medians[variant]:.2f} | "
                         + ("—" if variant == "none" else f"{extra:+.0f} µs") + " |")  # fmt: skip
        mlflow_extra = medians["mlflow"] - base
        xp_extra = medians["xpkit"] - base
        ratio = f"{mlflow_extra / xp_extra:.0f}×" if xp_extra > 0.01 else "(xp adds < 0.01 s)"
        lines += ["", f"- MLflow's added time / xp's: **{ratio}**.", ""]
    lines += [
        f"- Median of {r['reps']} repetitions, each variant a fresh process; the fit alone "
        "is timed (imports and model building excluded). Target: an integration costs no "
        "more than `run.log` itself, i.e. within noise of the framework's own CSV logger. "
        "The xpkit run is created before the fit (as `xp run` does); a standalone run "
        "tees the program's output into output.log, which the HF Trainer's per-step "
        "printing pays for.",
        "- Command: `python benchmarks/bench_integrations.py --out BENCHMARKS.md` "
        "(part of `make bench`).",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xp-bench-int-") as tmp:
        results = scenario_integrations(Path(tmp), args.reps, args.steps)
    print(json.dumps(results, indent=2))
    section = render_integrations(results)
    print("\n".join(section))
    if args.out:
        args.out.write_text(splice(args.out.read_text(), section, "## 9. Framework integrations"))


if __name__ == "__main__":
    main()
