"""Side-by-side scenarios against MLflow (SQLite backend) and Sacred (file observer):
batched logging, search over 10,000 runs, comparing runs and a 1,000-run report, and
the points lost to kill -9 right after logging.

MLflow databases with thousands of runs are filled by copying the rows that MLflow's
own API wrote for one run (runs, params, metrics, latest_metrics, tags): creating
10,000 runs through the API would take the whole benchmark budget by itself."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench_proc import run_timed

PY = sys.executable
# MLflow's report path (one get_metric_history query per run and metric) takes ~4.5 min
# for 1,000 runs here: it is timed on this many of them and scaled linearly.
MLFLOW_REPORT_RUNS = 100
RUN_TABLES = ("runs", "params", "metrics", "latest_metrics", "tags")


def _script(work: Path, name: str, body: str) -> Path:
    path = work / name
    path.write_text(textwrap.dedent(body))
    return path


# --- MLflow databases ------------------------------------------------------------------
def mlflow_template(db: Path) -> str:
    """An MLflow database with one run written by MLflow itself; returns its run ID."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{db}")
    mlflow.set_experiment("bench")
    with mlflow.start_run() as run:
        mlflow.log_params({f"p{k}": k for k in range(10)})
        mlflow.log_metrics({"loss": 1.0, "acc": 0.5, "lr": 0.1}, step=0)
        return str(run.info.run_id)


def clone_runs(db_path: Path, template: str, count: int,
               params: Callable[[int], dict[str, Any]], summary: Callable[[int], dict[str, float]],
               history: Callable[[int], Iterable[tuple[str, int, float]]] | None = None,
               ) -> list[str]:  # fmt: skip
    """`count` copies of the template run with their own params and metrics."""
    db = sqlite3.connect(db_path)
    rows = {t: db.execute(f"SELECT * FROM {t} WHERE run_uuid=?", (template,)).fetchall()
            for t in RUN_TABLES}  # fmt: skip
    cols = {t: [c[1] for c in db.execute(f"PRAGMA table_info({t})")] for t in RUN_TABLES}
    ids = []
    batch: dict[str, list[tuple[Any, ...]]] = {t: [] for t in RUN_TABLES}
    now = int(time.time() * 1000)
    for i in range(count):
        run_id = uuid.uuid4().hex
        ids.append(run_id)
        for row in rows["runs"]:
            record = dict(zip(cols["runs"], row), run_uuid=run_id, name=f"run{i}",
                          start_time=now - count + i)  # fmt: skip
            batch["runs"].append(tuple(record[c] for c in cols["runs"]))
        for row in rows["tags"]:
            record = dict(zip(cols["tags"], row), run_uuid=run_id)
            batch["tags"].append(tuple(record[c] for c in cols["tags"]))
        for key, value in params(i).items():
            batch["params"].append(tuple({"key": key, "value": str(value), "run_uuid": run_id}[c]
                                         for c in cols["params"]))  # fmt: skip
        points = list(history(i)) if history else [(k, 0, v) for k, v in summary(i).items()]
        for key, step, value in points:
            record = {"key": key, "value": value, "timestamp": now, "run_uuid": run_id,
                      "step": step, "is_nan": 0}  # fmt: skip
            batch["metrics"].append(tuple(record[c] for c in cols["metrics"]))
        for key, value in summary(i).items():
            record = {"key": key, "value": value, "timestamp": now, "run_uuid": run_id,
                      "step": 0, "is_nan": 0}  # fmt: skip
            batch["latest_metrics"].append(tuple(record[c] for c in cols["latest_metrics"]))
    with db:
        for table in RUN_TABLES:
            db.execute(f"DELETE FROM {table} WHERE run_uuid=?", (template,))
            marks = ",".join("?" * len(cols[table]))
            db.executemany(f"INSERT INTO {table} VALUES ({marks})", batch[table])
    db.close()
    return ids


# --- 2b. batched logging -----------------------------------------------------------------
BATCH_XP = """\
    import os, sys, time
    os.environ["XP_RUNS"] = sys.argv[1]
    import xpkit
    run = xpkit.init(no_git=True)
    names = [f"m{k}" for k in range(100)]
    start = time.perf_counter()
    for step in range(10_000):  # 100 metrics a call: 1,000,000 points
        run.log(dict.fromkeys(names, step * 0.001), step=step)
    run.finish()
    print(1_000_000 / (time.perf_counter() - start))
    """
BATCH_MLFLOW = """\
    import sys, time, mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
    mlflow.set_experiment("bench")
    batches = int(sys.argv[2])
    with mlflow.start_run() as run:
        client = MlflowClient()
        start = time.perf_counter()
        for b in range(batches):  # 1,000 points a call, MLflow's limit
            now = int(time.time() * 1000)
            client.log_batch(run.info.run_id, metrics=[
                Metric(f"m{k % 100}", k * 0.001, now, b * 10 + k // 100) for k in range(1000)])
        print(batches * 1000 / (time.perf_counter() - start))
    """


def scenario_batched(work: Path, reps: int) -> dict[str, Any]:
    xp_script = _script(work, "batch_xp.py", BATCH_XP)
    ml_script = _script(work, "batch_mlflow.py", BATCH_MLFLOW)
    rates: dict[str, list[float]] = {"xp": [], "mlflow": []}
    for rep in range(reps):
        rates["xp"].append(float(run_timed([PY, str(xp_script), str(work / f"bx{rep}")], work)[1]))
        rates["mlflow"].append(float(run_timed([PY, str(ml_script), str(work / "batch.db"), "20"],
                                             work)[1]))  # fmt: skip
    medians = {k: statistics.median(v) for k, v in rates.items()}
    return {"points_per_s": medians, "points": {"xp": 1_000_000, "mlflow": 20_000},
            "xp_over_mlflow": medians["xp"] / medians["mlflow"]}  # fmt: skip


# --- 3b. search over 10,000 runs ---------------------------------------------------------
SEARCH_MLFLOW = """\
    import sys, time
    started = time.perf_counter()
    import mlflow
    mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
    before = time.perf_counter()
    found = mlflow.search_runs(experiment_names=["bench"], max_results=100_000,
                               filter_string="params.p3 = '4' and metrics.acc > 0.5")
    print(len(found), time.perf_counter() - before)
    """


def scenario_search(work: Path, reps: int, xp_project: Path, count: int) -> dict[str, Any]:
    """`xp ls --where` vs `mlflow.search_runs` with the same filter on the same 10,000 runs
    (params p0..p9 = (i + k) % 7, metrics loss, acc, lr), same answer checked."""
    db = work / "search.db"
    template = mlflow_template(db)
    clone_runs(db, template, count, lambda i: {f"p{k}": (i + k) % 7 for k in range(10)},
               lambda i: {"loss": 1.0 / (i + 1), "acc": (i % 100) / 100, "lr": 0.1})  # fmt: skip
    script = _script(work, "search_mlflow.py", SEARCH_MLFLOW)
    env = {**os.environ, "XP_CACHE_DIR": str(work / "search-cache")}
    xp_cmd = ["xp", "ls", "--where", "p3=4", "--where", "acc>0.5", "--limit", "0", "--jsonl"]
    run_timed(xp_cmd, xp_project, env)  # the index exists, as it does after any xp command
    xp_times, ml_times, ml_inner = [], [], []
    for _ in range(reps):
        elapsed, out = run_timed(xp_cmd, xp_project, env)
        xp_times.append(elapsed)
        xp_found = len(out.splitlines())
        elapsed, out = run_timed([PY, str(script), str(db)], work)
        ml_times.append(elapsed)
        ml_found, inner = out.split()[-2:]
        ml_inner.append(float(inner))
    assert int(ml_found) == xp_found, f"MLflow found {ml_found} runs, xp {xp_found}"
    return {"runs": count, "found": xp_found, "xp_s": statistics.median(xp_times),
            "mlflow_s": statistics.median(ml_times), "mlflow_search_only_s":
            statistics.median(ml_inner)}  # fmt: skip


# --- 4. compare two runs, report over 1,000 runs -----------------------------------------
COMPARE_MLFLOW = """\
    import sys
    from mlflow.tracking import MlflowClient
    import mlflow
    mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
    client = MlflowClient()
    a, b = client.get_run(sys.argv[2]).data, client.get_run(sys.argv[3]).data
    for name, x, y in (("params", a.params, b.params), ("metrics", a.metrics, b.metrics)):
        for key in sorted(set(x) | set(y)):
            if x.get(key) != y.get(key):
                print(name, key, x.get(key), y.get(key))
    """
REPORT_MLFLOW = """\
    # What `xp report` does, written against MLflow: results table (mean and std over
    # seeds per configuration) and mean curves per configuration, as PNG.
    import sys
    from pathlib import Path
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from mlflow.tracking import MlflowClient
    mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
    runs = mlflow.search_runs(experiment_names=["bench"], max_results=100_000)
    table = runs.groupby(["params.lr", "params.wd"])[["metrics.loss", "metrics.acc"]].agg(
        ["mean", "std"])
    (Path(sys.argv[2]) / "table.txt").write_text(table.to_string())
    client = MlflowClient()
    for metric in ("loss", "acc"):
        fig, ax = plt.subplots()
        for (lr, wd), group in runs.groupby(["params.lr", "params.wd"]):
            curves = {}
            for run_id in group["run_id"]:
                for m in client.get_metric_history(run_id, metric):
                    curves.setdefault(m.step, []).append(m.value)
            steps = sorted(curves)
            ax.plot(steps, [sum(curves[s]) / len(curves[s]) for s in steps], label=f"{lr},{wd}")
        fig.savefig(f"{sys.argv[2]}/{metric}.png")
    print(len(runs))
    """


def scenario_compare_report(work: Path, reps: int, report_project: Path,
                            xp_report_s: float) -> dict[str, Any]:  # fmt: skip
    """MLflow doing what `xp diff` and `xp report` do, on the same runs as section 5."""
    from bench_report import POINTS, RUNS

    db = work / "report.db"
    template = mlflow_template(db)
    lrs, wds = [0.1, 0.03, 0.01, 0.003, 0.001], [0.0, 0.01, 0.1, 1.0]

    def params(i: int) -> dict[str, Any]:
        return {"lr": lrs[i % 5], "wd": wds[(i // 5) % 4], "seed": i // 20}

    def history(i: int) -> Iterable[tuple[str, int, float]]:
        lr, seed = lrs[i % 5], i // 20
        for s in range(POINTS):
            yield "loss", s, 1.0 / (1 + s * lr)
            yield "acc", s, min(0.99, s * lr / 10 + seed * 1e-4)

    def summary(i: int) -> dict[str, float]:
        lr, seed = lrs[i % 5], i // 20
        return {
            "loss": 1.0 / (1 + (POINTS - 1) * lr),
            "acc": min(0.99, (POINTS - 1) * lr / 10 + seed * 1e-4),
        }

    ids = clone_runs(db, template, MLFLOW_REPORT_RUNS, params, summary, history)
    compare = _script(work, "compare_mlflow.py", COMPARE_MLFLOW)
    report = _script(work, "report_mlflow.py", REPORT_MLFLOW)
    out = work / "mlflow-report"
    out.mkdir()
    xp_runs = sorted(p.name for p in (report_project / "runs").iterdir() if p.name[0] != ".")
    env = {**os.environ, "XP_CACHE_DIR": str(work / "report-cache")}
    diff_xp, diff_ml = [], []
    for _ in range(reps):
        diff_xp.append(run_timed(["xp", "diff", xp_runs[0], xp_runs[1]], report_project, env)[0])
        diff_ml.append(run_timed([PY, str(compare), str(db), ids[0], ids[1]], work)[0])
    report_ml, found = run_timed([PY, str(report), str(db), str(out)], work)  # once: slow
    assert int(found.split()[-1]) == MLFLOW_REPORT_RUNS
    return {"runs": RUNS, "points": POINTS, "diff_xp_s": statistics.median(diff_xp),
            "diff_mlflow_s": statistics.median(diff_ml), "report_xp_s": xp_report_s,
            "report_mlflow_measured_s": report_ml, "mlflow_report_runs": MLFLOW_REPORT_RUNS,
            "report_mlflow_s": report_ml * RUNS / MLFLOW_REPORT_RUNS}  # fmt: skip


# --- 5. crash cost -------------------------------------------------------------------------
CRASH_XP = """\
    import os, sys, time
    os.environ["XP_RUNS"] = sys.argv[1]
    import xpkit
    run = xpkit.init(no_git=True)
    n, seconds = int(sys.argv[2]), float(sys.argv[3])
    pause = seconds / n
    for i in range(n):
        run.log({"loss": i * 0.001}, step=i)
        if pause:
            time.sleep(pause)
    print(run.dir, flush=True)
    time.sleep(60)
    """
CRASH_MLFLOW = """\
    import sys, time, mlflow
    mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
    mlflow.set_experiment("crash")
    n, seconds = int(sys.argv[2]), float(sys.argv[3])
    run = mlflow.start_run()
    pause = seconds / n
    for i in range(n):
        mlflow.log_metric("loss", i * 0.001, step=i)
        if pause:
            time.sleep(pause)
    print(run.info.run_id, flush=True)
    time.sleep(60)
    """
CRASH_SACRED = """\
    import sys, time
    from sacred import Experiment
    from sacred.observers import FileStorageObserver
    ex = Experiment("crash", save_git_info=False)
    ex.observers.append(FileStorageObserver(sys.argv[1]))
    n, seconds = int(sys.argv[2]), float(sys.argv[3])
    @ex.main
    def main(_run):
        pause = seconds / n
        for i in range(n):
            _run.log_scalar("loss", i * 0.001, i)
            if pause:
                time.sleep(pause)
        print(_run._id, flush=True)
        time.sleep(60)
    ex.run()
    """


def _kill_after_logging(script: Path, target: Path, n: int, seconds: float) -> str:
    """Start the logger, kill -9 it the moment it says it has logged n points."""
    args = [PY, str(script), str(target), str(n), str(seconds)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    said = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return said


def _kept_xp(said: str, _target: Path) -> int:
    path = Path(said) / "metrics.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _kept_mlflow(said: str, target: Path) -> int:
    db = sqlite3.connect(target)
    return int(db.execute("SELECT count(*) FROM metrics WHERE run_uuid=?", (said,)).fetchone()[0])


def _kept_sacred(said: str, target: Path) -> int:
    path = target / said / "metrics.json"
    return (
        len(json.loads(path.read_text()).get("loss", {}).get("steps", [])) if path.exists() else 0
    )


def scenario_crash(work: Path) -> dict[str, Any]:
    """Points on disk after kill -9 right after logging: a burst (as fast as each tool
    goes) and 3 s of steady logging."""
    tools = {
        "xp": (_script(work, "crash_xp.py", CRASH_XP), _kept_xp, work / "crash-xp"),
        "mlflow": (_script(work, "crash_mlflow.py", CRASH_MLFLOW), _kept_mlflow,
                   work / "crash.db"),
        "sacred": (_script(work, "crash_sacred.py", CRASH_SACRED), _kept_sacred,
                   work / "crash-sacred"),
    }  # fmt: skip
    cases = {"burst": {"xp": 10_000, "mlflow": 200, "sacred": 10_000},
             "steady 3 s": {"xp": 3_000, "mlflow": 300, "sacred": 3_000}}  # fmt: skip
    results: dict[str, dict[str, tuple[int, int]]] = {}
    for case, counts in cases.items():
        seconds = 0.0 if case == "burst" else 3.0
        for tool, (script, kept, target) in tools.items():
            said = _kill_after_logging(script, target, counts[tool], seconds)
            results.setdefault(case, {})[tool] = (counts[tool], kept(said, target))
    return results


def render_vs(batched: dict[str, Any], search: dict[str, Any], cr: dict[str, Any],
              crash: dict[str, Any]) -> dict[str, list[str]]:  # fmt: skip
    """The anchor sections, by the number they are filed under in BENCHMARKS.md."""
    rates = batched["points_per_s"]
    lines = [
        "## 2b. Batched logging (1,000,000 points for xp; MLflow timed on 20,000)",
        "",
        "| tool | call | points/s |",
        "| --- | --- | ---: |",
        f"| xpkit | `run.log` of 100 metrics at a step | {rates['xp']:,.0f} |",
        f"| MLflow | `MlflowClient.log_batch` of 1,000 metrics | {rates['mlflow']:,.0f} |",
        "| Sacred | no batch API | — |",
        "",
        f"- xp / MLflow: **{batched['xp_over_mlflow']:,.0f}×**.",
        "",
        f"## 3b. Filtering {search['runs']:,} runs: `p3 = 4` and `acc > 0.5` "
        f"({search['found']:,} match in both)",
        "",
        "| command | median s |",
        "| --- | ---: |",
        f"| `xp ls --where p3=4 --where 'acc>0.5' --limit 0 --json` (whole process) "
        f"| {search['xp_s']:.3f} |",
        f"| `mlflow.search_runs(filter_string=...)` (whole process) | {search['mlflow_s']:.3f} |",
        "| `mlflow.search_runs` call alone (after import) "
        f"| {search['mlflow_search_only_s']:.3f} |",
        "",
        f"- MLflow / xp: **{search['mlflow_s'] / search['xp_s']:.1f}×** whole process, "
        f"{search['mlflow_search_only_s'] / search['xp_s']:.1f}× for the search call alone "
        "against all of `xp ls`. Sacred has no query API (its file observer writes folders).",
        "",
        f"## 5b. Comparing two runs, and a report over {cr['runs']:,} runs x "
        f"{cr['points']:,} points, against MLflow",
        "",
        "| task | xpkit s | MLflow s | MLflow / xp |",
        "| --- | ---: | ---: | ---: |",
        f"| compare two runs (`xp diff` / `get_run` x2 and a dict diff), whole process "
        f"| {cr['diff_xp_s']:.3f} | {cr['diff_mlflow_s']:.3f} "
        f"| {cr['diff_mlflow_s'] / cr['diff_xp_s']:.1f}× |",
        f"| report: table mean ± std over seeds + mean curves as PNG (`xp report`, warm / "
        f"`search_runs` + `get_metric_history` per run + matplotlib) "
        f"| {cr['report_xp_s']:.3f} | {cr['report_mlflow_s']:.1f} * "
        f"| {cr['report_mlflow_s'] / cr['report_xp_s']:.0f}× |",
        "",
        f"\\* MLflow's report was timed once on {cr['mlflow_report_runs']} of the runs "
        f"({cr['report_mlflow_measured_s']:.1f} s) and scaled linearly to {cr['runs']:,}: it "
        "makes one query per run and metric (a full run took 266 s here, beyond the "
        "benchmark's 10-minute budget).",
        "",
        "## 5c. Crash cost: points on disk after `kill -9` right after logging",
        "",
        "| case | tool | points logged | on disk after kill -9 | lost |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for case, per_tool in crash.items():
        for tool, (logged, kept) in per_tool.items():
            lines.append(f"| {case} | {tool} | {logged:,} | {kept:,} | {logged - kept:,} |")
    lines += [
        "",
        "- xp appends metrics every `XP_FLUSH_INTERVAL` (0.25 s), whenever about 64 KiB of "
        "lines are pending, and at exit or SIGTERM, so a kill -9 loses at most the last "
        "0.25 s or 64 KiB of points; MLflow writes each point in its own transaction (nothing "
        "lost, at its logging speed); Sacred's file observer writes metrics at its heartbeat "
        "(every 10 s).",
        "",
    ]
    sections: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("## "):
            current = sections.setdefault(line.split()[1].rstrip("."), [])
        current.append(line)
    return sections
