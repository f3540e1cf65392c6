"""`xp sweep` for `make bench`: what the controller costs per trial and while it waits,
beside Optuna's own storages driven the usual way (worker processes sharing a study).

- xp: the controller in-process over a real project and runs root: ask -> the trial's run
  queued (snapshot, run directory, queue marker), and finished -> told (run.json and
  summary read, the study told), per trial; then `xp sweep` as a process with its trials
  queued and no worker: its CPU while it waits.
- Optuna: W worker processes each calling `study.optimize` on one study in SQLite (RDB
  storage) or in a journal file (JournalFileBackend), a trivial objective, so the time
  per trial is the sampler and the storage; and the sampler alone (in memory).
The sampler is the same everywhere: TPE, multivariate, constant liar, seeded.

Standalone: `python benchmarks/bench_sweep.py --out BENCHMARKS.md` replaces this section."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from bench_proc import splice

WORKER = textwrap.dedent("""\
    import sys, time, warnings
    import optuna
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kind, where, trials, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if kind == "sqlite":
        storage = f"sqlite:///{where}"
    elif kind == "journal":
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        storage = JournalStorage(JournalFileBackend(where))
    else:
        storage = None
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    study = optuna.create_study(study_name="bench", storage=storage, sampler=sampler,
                                load_if_exists=True)
    def objective(trial):
        x, y = trial.suggest_float("x", -5, 5), trial.suggest_float("y", -5, 5)
        return (x - 2) ** 2 + (y + 1) ** 2
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    print("ELAPSED", time.perf_counter() - started)
    """)

EXPERIMENT = textwrap.dedent("""\
    id = "bench1"
    name = "quad"
    command = "python quad.py --x {{x}} --y {{y}}"

    [search]
    method = "tpe"
    metric = "loss"
    goal = "minimize"
    trials = {trials}
    parallel = {parallel}
    seed = 0

    [search.params]
    x = {{ low = -5.0, high = 5.0 }}
    y = {{ low = -5.0, high = 5.0 }}
    """)


def make_project(root: Path, trials: int, parallel: int) -> Path:
    root.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "b@b"],
                 ["config", "user.name", "bench"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=root, check=True)
    (root / "quad.py").write_text("print('quad')\n")
    (root / "xp.toml").write_text('runs = "runs"\n')
    (root / ".gitignore").write_text("/runs/\n")
    experiment = root / "experiments" / "01_quad.xp.toml"
    experiment.parent.mkdir()
    experiment.write_text(EXPERIMENT.format(trials=trials, parallel=parallel))
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "bench"], cwd=root, check=True)
    return experiment


def xp_per_trial(work: Path, trials: int) -> dict[str, float]:
    """The controller's own work per trial, in-process (no worker: the bench ends the
    runs the way a worker records them)."""
    from xpkit.experiment import load_experiment
    from xpkit.settings import load_settings
    from xpkit.store.rundir import RunDir
    from xpkit.sweep.controller import Controller
    from xpkit.sweep.lock import ControllerLock

    experiment_file = make_project(work / "xp", trials, trials)
    os.chdir(experiment_file.parents[1])
    settings = load_settings()
    experiment = load_experiment(experiment_file, settings.root)
    controller = Controller(settings, experiment, str(experiment_file), say=lambda _: None)
    asks = []
    with ControllerLock(settings.runs, experiment.id, "bench"), controller.held:
        controller._open()
        for _ in range(trials):
            started = time.perf_counter()
            controller._ask()
            asks.append(time.perf_counter() - started)
        for key, live in controller.live.items():
            assert live.history is not None
            run = RunDir(live.history.latest.run_dir.path)
            run.write_json("summary.json", {"loss": float(key)})
            run.update_run(status="finished", ended=time.time(), exit_code=0)
        started = time.perf_counter()
        controller._step()
        told = (time.perf_counter() - started) / trials
    assert not controller.live and controller.told == {"COMPLETE": trials}
    return {"first_ask": asks[0], "ask": statistics.median(asks[1:]),
            "ask_last_tenth": statistics.median(asks[-trials // 10:]), "tell": told}  # fmt: skip


def xp_idle_cpu(work: Path, seconds: float) -> float:
    """CPU of an `xp sweep` process whose trials are queued and no worker runs: % of a core."""
    import psutil

    experiment = make_project(work / "idle", 4, 4)
    env = {**os.environ, "XP_CACHE_DIR": str(work / "idle-cache")}
    proc = subprocess.Popen([sys.executable, "-m", "xpkit.cli.main", "sweep", str(experiment)],
                            cwd=experiment.parents[1], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        runs = experiment.parents[1] / "runs"
        deadline = time.monotonic() + 60
        while len(list(runs.glob("bench1_*"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)
        watched = psutil.Process(proc.pid)
        before = sum(watched.cpu_times()[:2])
        time.sleep(seconds)
        used = sum(watched.cpu_times()[:2]) - before
    finally:
        proc.kill()
        proc.wait()
    return 100.0 * used / seconds


def optuna_per_trial(work: Path, kind: str, trials: int, workers: int) -> float:
    """Worker-seconds per trial of W processes sharing one study."""
    script = work / "optuna_worker.py"
    script.write_text(WORKER)
    where = str(work / f"study-{kind}.{'db' if kind == 'sqlite' else 'log'}")
    for stale in (Path(where), Path(where + ".lock")):
        stale.unlink(missing_ok=True)
    if kind == "sqlite":  # created once, as a shared study is: not by racing workers
        subprocess.run([sys.executable, str(script), kind, where, "0", "0"], check=True)
    each = trials // workers
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(script), kind, where, str(each), str(i)],
                              stdout=subprocess.PIPE, text=True)
             for i in range(workers)]  # fmt: skip
    elapsed = []
    for proc in procs:
        out, _ = proc.communicate()
        elapsed.append(float(out.split("ELAPSED")[1]))
    assert time.perf_counter() - started > 0
    return sum(elapsed) / (each * workers)


def scenario_sweep(work: Path, reps: int, trials: int, workers: int) -> dict[str, Any]:
    xp_runs, sqlite, journal, memory, idle = [], [], [], [], []
    for rep in range(reps):
        rep_dir = work / f"rep{rep}"
        rep_dir.mkdir()
        xp_runs.append(xp_per_trial(rep_dir, trials))
        sqlite.append(optuna_per_trial(rep_dir, "sqlite", trials, workers))
        journal.append(optuna_per_trial(rep_dir, "journal", trials, workers))
        memory.append(optuna_per_trial(rep_dir, "memory", trials, 1))
        idle.append(xp_idle_cpu(rep_dir, 10.0))
    import optuna

    med = statistics.median
    return {
        "reps": reps, "trials": trials, "workers": workers, "optuna": optuna.__version__,
        "xp_first_ask": med(r["first_ask"] for r in xp_runs),
        "xp_ask": med(r["ask"] for r in xp_runs),
        "xp_ask_last_tenth": med(r["ask_last_tenth"] for r in xp_runs),
        "xp_tell": med(r["tell"] for r in xp_runs),
        "optuna_sqlite": med(sqlite), "optuna_journal": med(journal),
        "optuna_memory": med(memory), "xp_idle_cpu_percent": med(idle),
    }  # fmt: skip


def render_sweep(r: dict[str, Any]) -> list[str]:
    ms = 1000.0
    xp_total = r["xp_ask"] + r["xp_tell"]
    trials, workers = r["trials"], r["workers"]
    return [
        f"## 10. Sweeps: `xp sweep` vs Optuna's own storages ({trials} TPE trials)",
        "",
        "| what | per trial, ms |",
        "| --- | ---: |",
        f"| xp controller: ask -> run queued (snapshot, run directory, queue marker) | "
        f"{r['xp_ask'] * ms:.1f} |",
        f"| xp controller: the same, last tenth of the study | {r['xp_ask_last_tenth'] * ms:.1f} |",
        f"| xp controller: run finished -> told | {r['xp_tell'] * ms:.1f} |",
        f"| xp controller: ask + tell | **{xp_total * ms:.1f}** |",
        f"| Optuna, {workers} workers sharing a SQLite study (RDB storage) | "
        f"{r['optuna_sqlite'] * ms:.1f} |",
        f"| Optuna, {workers} workers sharing a journal file (JournalFileBackend) | "
        f"{r['optuna_journal'] * ms:.1f} |",
        f"| Optuna, 1 process, in memory (the sampler alone) | {r['optuna_memory'] * ms:.1f} |",
        "",
        f"- The first trial of an `xp sweep` also takes the snapshot: {r['xp_first_ask']:.2f} s.",
        f"- Idle controller (its trials queued, no worker): **{r['xp_idle_cpu_percent']:.2f} %** "
        "of one core (it looks at its trials' run.json and metrics.jsonl twice a second). "
        "Optuna's workers have no controller; each one waits inside its own objective.",
        "- xp's per-trial cost includes creating a recorded, queued run; Optuna's figures are "
        "the storage and the sampler only. Both are milliseconds against trials that train for "
        "minutes; what xp buys with them is no shared database, no lock over NFS, and trials "
        "that are ordinary runs.",
        f"- Optuna {r['optuna']}. Median of {r['reps']} repetitions; Optuna figures are "
        "worker-seconds per trial.",
        "- Command: `python benchmarks/bench_sweep.py --out BENCHMARKS.md` (part of `make bench`).",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out.resolve() if args.out else None
    with tempfile.TemporaryDirectory(prefix="xp-bench-sweep-") as tmp:
        os.environ["XP_CACHE_DIR"] = str(Path(tmp) / "cache")
        here = os.getcwd()
        try:
            results = scenario_sweep(Path(tmp), args.reps, args.trials, args.workers)
        finally:
            os.chdir(here)
    print(json.dumps(results, indent=2))
    section = render_sweep(results)
    print("\n".join(section))
    if out:
        out.write_text(splice(out.read_text(), section, "## 10. Sweeps"))


if __name__ == "__main__":
    main()
