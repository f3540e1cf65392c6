"""xp against the trackers a researcher would pick instead of it, each in its own
virtualenv under the benchmark's work folder (`.bench/anchors/<tool>`, made on first use,
never in the dev extras): W&B in offline mode, trackio (local), Aim; xp in this
interpreter. The same scenarios for each, in one run:

  - start-up: a whole process that opens a run, records 10 params, logs 1 metric, ends;
  - logging: `log` of one scalar at a step, calls/s (each tool as many calls as fit in a
    few seconds), then the points the tool has on disk after its run ended (read back
    with its own reader) and the process's peak RSS;
  - many runs in one process: runs created in a loop (10 params, 3 metrics), ms a run;
  - the 1,000 runs' filtered query `p3 == 4` where the tool has a local query.

Standalone: `python benchmarks/bench_trackers.py --out BENCHMARKS.md` (section 15)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from bench_proc import run_timed, settle_disk, splice

ANCHORS = {"wandb": "wandb==0.31.0", "trackio": "trackio==0.43.0", "aim": "aim==3.29.1"}
ANCHOR_ROOT = Path(__file__).resolve().parent.parent / ".bench" / "anchors"
# Calls timed per tool: the slow ones log fewer (their rate is steady well before that).
LOG_CALLS = {"xp": 1_000_000, "wandb": 20_000, "trackio": 200_000, "aim": 20_000}
LOOP_RUNS = {"xp": 1000, "wandb": 100, "trackio": 200, "aim": 50}

COMMON = """\
import json, os, resource, sys, time
mode, n, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
params = {f"p{i}": i for i in range(10)}
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
"""

XP_PY = COMMON + textwrap.dedent(
    """\
    import xpkit as xp
    if mode == "startup":
        xp.init(config=params).log({"m": 1.0})
    elif mode == "log":
        run = xp.init(config=params, name="log")
        started = time.perf_counter()
        for i in range(n):
            run.log({"loss": 0.5}, step=i)
        rate = n / (time.perf_counter() - started)
        run.finish()
        with open(os.path.join(run.dir, "metrics.jsonl"), "rb") as f:
            kept = sum(1 for _ in f)
        print(json.dumps({"rate": rate, "kept": kept, "rss": rss()}))
    elif mode == "loop":
        started = time.perf_counter()
        for i in range(n):
            run = xp.init(config={f"p{k}": (i + k) % 7 for k in range(10)}, name=f"l{i}")
            run.log({"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 0.1})
            run.finish()
        print(json.dumps({"per_run": (time.perf_counter() - started) / n}))
    """
)

WANDB_PY = COMMON + textwrap.dedent(
    """\
    import struct, wandb
    from wandb.proto import wandb_internal_pb2
    settings = wandb.Settings(silent=True, console="off", x_disable_stats=True)
    def points(path):
        \"\"\"History points in a .wandb file (a LevelDB-style log of protobuf records).\"\"\"
        data = open(path, "rb").read()
        pos, block, count, parts = 7, 32768, 0, b""
        while pos + 7 <= len(data):
            left = block - pos % block
            if left < 7:
                pos += left
                continue
            length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
            parts += data[pos + 7:pos + 7 + length]
            pos += 7 + length
            if kind in (1, 4):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(parts)
                parts = b""
                if record.WhichOneof("record_type") == "history":
                    count += sum(1 for item in record.history.item
                                 if "loss" in (item.key, *item.nested_key))
        return count
    def init(config, name=None):
        return wandb.init(project="bench", mode="offline", dir=work, config=config, name=name,
                          settings=settings)
    if mode == "startup":
        run = init(params); run.log({"m": 1.0}); run.finish()
    elif mode == "log":
        run = init(params)
        started = time.perf_counter()
        for i in range(n):
            run.log({"loss": 0.5}, step=i)
        rate = n / (time.perf_counter() - started)
        run.finish()
        (found,) = [os.path.join(r, f) for r, _, fs in os.walk(work) for f in fs
                    if f.endswith(".wandb") and run.id in f]
        print(json.dumps({"rate": rate, "kept": points(found), "rss": rss()}))
    elif mode == "loop":
        started = time.perf_counter()
        for i in range(n):
            run = init({f"p{k}": (i + k) % 7 for k in range(10)}, f"l{i}")
            run.log({"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 0.1})
            run.finish()
        print(json.dumps({"per_run": (time.perf_counter() - started) / n}))
    """
)

TRACKIO_PY = COMMON + textwrap.dedent(
    """\
    os.environ["TRACKIO_DIR"] = work
    import trackio
    if mode == "startup":
        trackio.init(project="bench", config=params); trackio.log({"m": 1.0}); trackio.finish()
    elif mode == "log":
        run = trackio.init(project="bench", name="log", config=params)
        started = time.perf_counter()
        for i in range(n):
            trackio.log({"loss": 0.5}, step=i)
        rate = n / (time.perf_counter() - started)
        trackio.finish()
        from trackio.sqlite_storage import SQLiteStorage
        kept = len(SQLiteStorage.get_logs("bench", "log"))
        print(json.dumps({"rate": rate, "kept": kept, "rss": rss()}))
    elif mode == "loop":
        started = time.perf_counter()
        for i in range(n):
            trackio.init(project="loop", name=f"l{i}",
                         config={f"p{k}": (i + k) % 7 for k in range(10)})
            trackio.log({"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 0.1})
            trackio.finish()
        print(json.dumps({"per_run": (time.perf_counter() - started) / n}))
    elif mode == "query":  # no query API: list the project's runs, read each config
        started = time.perf_counter()
        runs = trackio.Api().runs("loop")
        found = sum(1 for run in runs if (run.config or {}).get("p3") == 4)
        print(json.dumps({"query_s": time.perf_counter() - started, "found": found}))
    """
)

AIM_PY = COMMON + textwrap.dedent(
    """\
    from aim import Repo, Run
    from aim.sdk.index_manager import RepoIndexManager
    repo = os.path.join(work, "aim")
    if not os.path.isdir(os.path.join(repo, ".aim")):
        Repo.from_path(repo, init=True)
    def new_run(config):
        run = Run(repo=repo, system_tracking_interval=None, log_system_params=False,
                  capture_terminal_logs=False)
        run["hparams"] = config
        return run
    if mode == "startup":
        run = new_run(params); run.track(1.0, name="m"); run.close()
    elif mode == "log":
        run = new_run(params)
        started = time.perf_counter()
        for i in range(n):
            run.track(0.5, name="loss", step=i)
        rate = n / (time.perf_counter() - started)
        run.close()
        RepoIndexManager.get_index_manager(Repo.from_path(repo)).index(run.hash)  # as `aim up`
        query = Repo.from_path(repo).query_metrics("metric.name == 'loss'", report_mode=0)
        kept = sum(len(metric.values.values_list()) for metric in query.iter())
        print(json.dumps({"rate": rate, "kept": kept, "rss": rss()}))
    elif mode == "loop":
        started = time.perf_counter()
        for i in range(n):
            run = new_run({f"p{k}": (i + k) % 7 for k in range(10)})
            run.track(1.0 / (i + 1), name="loss"); run.track(0.5, name="acc")
            run.track(0.1, name="lr"); run.close()
        print(json.dumps({"per_run": (time.perf_counter() - started) / n}))
    elif mode == "query":  # runs are queryable once indexed (by `aim up`): index first
        opened = Repo.from_path(repo)
        indexer = RepoIndexManager.get_index_manager(opened)
        for run_hash in os.listdir(os.path.join(repo, ".aim", "seqs", "chunks")):
            indexer.index(run_hash)
        started = time.perf_counter()
        query = Repo.from_path(repo).query_runs("run.hparams.p3 == 4", report_mode=0)
        found = sum(1 for _ in query.iter_runs())
        print(json.dumps({"query_s": time.perf_counter() - started, "found": found}))
    """
)

SCRIPTS = {"xp": XP_PY, "wandb": WANDB_PY, "trackio": TRACKIO_PY, "aim": AIM_PY}


def anchor_python(tool: str) -> str:
    """The interpreter of the tool's own virtualenv, made (and the tool installed) once."""
    if tool == "xp":
        return sys.executable
    venv = ANCHOR_ROOT / tool
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", ANCHORS[tool]], check=True)
    return str(python)


def _version(python: str, tool: str) -> str:
    module = "xpkit" if tool == "xp" else tool
    code = f"import importlib.metadata as m; print(m.version({module!r}))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def scenario_trackers(work: Path, reps: int, tools: list[str], queries: int) -> dict[str, Any]:
    """Every tool runs in the same 1,000-file git project with one file edited (xp
    snapshots it; the others record no code)."""
    from bench_growth import _project

    project = _project(work / "project", 1000)
    env = {**os.environ, "XP_CACHE_DIR": str(work / "cache"), "XP_GPU_PROBE": "none",
           "WANDB_SILENT": "true", "TRACKIO_DIR": str(work / "trackio")}  # fmt: skip
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    scripts, pythons, results = {}, {}, {}
    for tool in tools:
        scripts[tool] = work / f"{tool}_bench.py"
        scripts[tool].write_text(SCRIPTS[tool])
        pythons[tool] = anchor_python(tool)
        results[tool] = {"version": _version(pythons[tool], tool), "startup": []}

    def call(tool: str, mode: str, n: int, folder: str) -> tuple[float, str]:
        target = work / folder
        target.mkdir(exist_ok=True)
        return run_timed([pythons[tool], str(scripts[tool]), mode, str(n), str(target)],
                         project, env)  # fmt: skip

    for rep in range(reps):  # whole processes, tools alternating
        for tool in tools:
            results[tool]["startup"].append(call(tool, "startup", 0, f"{tool}-s{rep}")[0])
    for tool in tools:
        logged = [json.loads(call(tool, "log", LOG_CALLS[tool], f"{tool}-log{rep}")[1]
                             .splitlines()[-1]) for rep in range(reps)]  # fmt: skip
        results[tool]["log"] = {key: statistics.median(x[key] for x in logged)
                                for key in ("rate", "kept", "rss")}  # fmt: skip
        results[tool]["log"]["calls"] = LOG_CALLS[tool]
        settle_disk(pause=10)
        loop = json.loads(call(tool, "loop", LOOP_RUNS[tool], f"{tool}-loop")[1].splitlines()[-1])
        results[tool]["loop_ms"] = loop["per_run"] * 1000
        results[tool]["loop_runs"] = LOOP_RUNS[tool]
        results[tool]["startup"] = statistics.median(results[tool]["startup"])
    results["query"] = _queries(project, env, tools, call, queries)
    return results


def _queries(project: Path, env: dict[str, str], tools: list[str], call: Any, count: int
             ) -> dict[str, Any]:  # fmt: skip
    """Filtered query over `count` runs: xp ls --where; trackio and Aim through their own
    APIs over runs made by their loop (the query folder gets `count` of them)."""
    found: dict[str, Any] = {}
    if "xp" in tools:
        shutil.rmtree(project / "runs", ignore_errors=True)  # only the query's runs
        call("xp", "loop", count, "xp-q")
        ls = [sys.executable, "-m", "xpkit.cli.main", "ls", "--where", "p3=4", "--limit", "0",
              "--json"]  # fmt: skip
        run_timed(ls, project, env)
        elapsed, out = run_timed(ls, project, env)
        found["xp"] = {"query_s": elapsed, "found": len(json.loads(out)), "whole": True}
    for tool in ("trackio", "aim"):
        if tool in tools:
            call(tool, "loop", count, f"{tool}-q")
            found[tool] = json.loads(call(tool, "query", 0, f"{tool}-q")[1].splitlines()[-1])
    return found


def render_trackers(r: dict[str, Any], tools: list[str]) -> list[str]:
    names = {"xp": "xpkit", "wandb": "W&B offline", "trackio": "trackio (local)", "aim": "Aim"}
    lines = ["## 15. xp against W&B (offline), trackio and Aim", "",
             "Versions: " + ", ".join(f"{names[t]} {r[t]['version']}" for t in tools) + ".", "",
             "| tool | start-up, whole process | `log` calls/s | points on disk after the run "
             "| peak RSS | runs in one process | query `p3 == 4` over the loop's runs |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
    for tool in tools:
        t, q = r[tool], r["query"].get(tool)
        log = t["log"]
        query = (f"{q['query_s']:.2f} s ({q['found']} found)" if q
                 else "no local query API")  # fmt: skip
        lines.append(f"| {names[tool]} | {t['startup']:.2f} s | {log['rate']:,.0f} | "
                     f"{log['kept']:,.0f} of {log['calls']:,} | {log['rss'] / 2**20:.0f} MB | "
                     f"{t['loop_ms']:.1f} ms a run ({t['loop_runs']:,} runs) "
                     f"| {query} |")  # fmt: skip
    xp = r["xp"]
    lines += ["", "- Ratios to xp: " + "; ".join(
        f"{names[t]} start-up {r[t]['startup'] / xp['startup']:.1f}x, logging "
        f"{xp['log']['rate'] / r[t]['log']['rate']:.0f}x slower, loop "
        f"{r[t]['loop_ms'] / xp['loop_ms']:.1f}x" for t in tools if t != "xp") + ".",
        "- xp's query is the whole `xp ls --where p3=4 --limit 0 --json` process (index warm); "
        "trackio has no filter API: `Api().runs()` then each run's config, filtered in Python; "
        "Aim: `Repo.query_runs('run.hparams.p3 == 4')`, timed after indexing the runs (which "
        "Aim's UI server does in the background). W&B offline keeps runs as files to "
        "upload and has no local query.",
        "- Each anchor runs in its own virtualenv under `.bench/anchors/`; start-ups alternate "
        "tools, medians of the repetitions.",
        "- Command: `python benchmarks/bench_trackers.py --out BENCHMARKS.md` "
        "(part of `make bench`).", "", ""]  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tools", default="xp,wandb,trackio,aim")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    work = Path(tempfile.mkdtemp(prefix="xpbench-trackers-"))
    try:
        result = scenario_trackers(work, args.reps, tools, args.queries)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    section = render_trackers(result, tools)
    print("\n".join(section))
    if args.out:
        args.out.write_text(splice(args.out.read_text(), section, "## 15. xp against"))


if __name__ == "__main__":
    main()
