"""How xp's costs grow with a lab's scale (issue 22): start-up against the project's size,
listing against the number of runs, the queue against the number of queued runs.

Measured, medians of whole processes (with bytecode, as installed):
  - `xp run -- python -c pass` and a standalone `xp.init()` program, minus plain python,
    in projects of 1,000 / 10,000 / 100,000 tracked files with one file edited;
  - `xp ls` over 10,000 and 100,000 runs (10 params, 3 metrics each): cold (no index),
    warm with nothing changed, warm after 10 runs changed through xp, and a filter;
    the dashboard's runs page, time to its first byte;
  - `xp queue` with 1,000 and 10,000 queued runs.

Standalone: `python benchmarks/bench_growth.py --out BENCHMARKS.md` replaces its section."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench_core import make_runs
from bench_proc import run_timed, settle_disk, splice
from bench_scale import INIT_PY

XP = [sys.executable, "-m", "xpkit.cli.main"]
CHANGE_PY = """\
import sys
from pathlib import Path
from xpkit.store import rundir as rd
root = Path(sys.argv[1])
for name in sorted(p.name for p in root.iterdir() if not p.name.startswith("."))[:10]:
    rd.RunDir(root / name).update_run(tags=["changed"])
"""


def _env(work: Path, cache: str) -> dict[str, str]:
    env = {**os.environ, "XP_CACHE_DIR": str(work / cache), "XP_GPU_PROBE": "none"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _project(root: Path, files: int) -> Path:
    """A git project of `files` tracked files in folders of 1,000, one of them edited."""
    root.mkdir(parents=True)
    for i in range(files):
        folder = root / "src" / f"pkg{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"mod{i:06d}.py").write_text(f"VALUE = {i}\n")
    (root / "init.py").write_text(INIT_PY)
    (root / "xp.toml").write_text('runs = "runs"\n')
    (root / ".gitignore").write_text("/runs/\n")
    commit = ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], commit):
        subprocess.run(["git", *args], cwd=root, check=True)
    (root / "src" / "pkg000" / "mod000000.py").write_text("VALUE = -1\n")
    return root


def scenario_startup(work: Path, sizes: list[int], reps: int) -> list[dict[str, Any]]:
    found = []
    for files in sizes:
        project = _project(work / f"p{files}", files)
        env = _env(work, f"cache-p{files}")
        run = [*XP, "run", "--", sys.executable, "-c", "pass"]
        # The first runs of a project create its worktree and, from XP_WATCH_MIN_FILES
        # files, start its watcher (whose first answer has no token yet).
        for _ in range(3):
            run_timed(run, project, env)
            time.sleep(0.5)
        plain, xp_run, init, edited = [], [], [], []
        settle_disk()
        target = project / "src" / "pkg000" / "mod000001.py"
        for rep in range(reps):
            plain.append(run_timed([sys.executable, "-c", "pass"], project, env)[0])
            xp_run.append(run_timed(run, project, env)[0])
            init.append(run_timed([sys.executable, "init.py"], project, env)[0])
            target.write_text(f"VALUE = {rep}\n")  # one more file changed since the last run
            edited.append(run_timed(run, project, env)[0])
        med = statistics.median
        found.append({"files": files, "plain": med(plain), "xp_run": med(xp_run),
                      "init": med(init), "edited": med(edited)})  # fmt: skip
        shutil.rmtree(project)
    return found


def _first_byte(project: Path, env: dict[str, str], reps: int) -> float:
    """Median seconds to the first byte of the dashboard's runs page (index warm)."""
    server = subprocess.Popen(
        [*XP, "ui", "--port", "0", "--no-token"], cwd=project, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = ""
        while not url:
            line = server.stdout.readline()
            if not line:
                raise SystemExit("xp ui exited")
            match = re.search(r"http://127\.0\.0\.1:\d+/?", line)
            url = match.group(0) if match else ""
        urllib.request.urlopen(url, timeout=120).read()  # warms the index
        samples = []
        for _ in range(reps):
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=120) as response:
                response.read(1)
                samples.append(time.perf_counter() - started)
                response.read()
        return statistics.median(samples)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def scenario_listing(work: Path, counts: list[int], reps: int) -> list[dict[str, Any]]:
    found = []
    change = work / "change.py"
    change.write_text(CHANGE_PY)
    for count in counts:
        project = work / f"runs{count}"
        project.mkdir()
        (project / "xp.toml").write_text('runs = "runs"\n')
        make_runs(project / "runs", count)
        settle_disk()
        env = _env(work, f"cache-runs{count}")
        ls, where = [*XP, "ls"], [*XP, "ls", "--where", "p3=4", "--limit", "0", "--json"]
        cold, warm, changed, filtered = [], [], [], []
        for _ in range(reps):
            shutil.rmtree(work / f"cache-runs{count}", ignore_errors=True)
            cold.append(run_timed(ls, project, env)[0])
            time.sleep(2.1)  # past the mtime tick: folders made just now are settled
            run_timed(ls, project, env)
            warm.append(run_timed(ls, project, env)[0])
            run_timed([sys.executable, str(change), str(project / "runs")], project, env)
            changed.append(run_timed(ls, project, env)[0])
            filtered.append(run_timed(where, project, env)[0])
        med = statistics.median
        found.append({"runs": count, "cold": med(cold), "warm": med(warm),
                      "changed": med(changed), "where": med(filtered),
                      "ui_first_byte": _first_byte(project, env, reps)})  # fmt: skip
        shutil.rmtree(project)
    return found


def scenario_queue(work: Path, counts: list[int], reps: int) -> list[dict[str, Any]]:
    """`xp queue` with `count` queued runs: one `xp submit`, then its run folder and
    queue marker copied (submitting 10,000 one by one would take the whole budget)."""
    found = []
    for count in counts:
        project = _project(work / f"q{count}", 10)
        env = _env(work, f"cache-q{count}")
        name = run_timed([*XP, "submit", "--", "python", "-c", "pass"], project, env)[1].split()[-1]
        runs = project / "runs"
        template, marker = runs / name, runs / ".xp" / "queue" / name
        expid, _, slug = name.split("_", 2)
        info = json.loads((template / "run.json").read_text())
        mark = json.loads(marker.read_text())
        for i in range(2, count + 1):
            copy = f"{expid}_{i:03d}_{slug}"
            shutil.copytree(template, runs / copy)
            (runs / copy / "run.json").write_text(json.dumps({**info, "name": copy, "trial": i}))
            queued = {**mark, "submitted": mark["submitted"] + i}
            (marker.parent / copy).write_text(json.dumps(queued))
        run_timed([*XP, "queue"], project, env)
        samples = [run_timed([*XP, "queue"], project, env)[0] for _ in range(reps)]
        found.append({"queued": count, "queue": statistics.median(samples)})
        shutil.rmtree(project)
    return found


def render_growth(r: dict[str, Any]) -> list[str]:
    startup, listing, queue = r["startup"], r["listing"], r["queue"]
    lines = ["## 14. Growth with a lab's scale (project size, runs, queue)", "",
             "Start-up against the project's size (one file edited), added to plain python:", "",
             "| tracked files | plain python | `xp run -- python -c pass` "
             "| standalone `xp.init()` | `xp run` after editing one more file |",
             "| ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for s in startup:
        lines.append(f"| {s['files']:,} | {s['plain'] * 1000:.0f} ms | "
                     f"+{(s['xp_run'] - s['plain']) * 1000:.0f} ms | "
                     f"+{(s['init'] - s['plain']) * 1000:.0f} ms | "
                     f"+{(s.get('edited', s['xp_run']) - s['plain']) * 1000:.0f} ms |")  # fmt: skip
    lines += ["", "Listing (10 params, 3 metrics a run; whole processes):", "",
              "| runs | `xp ls` cold | warm | warm, 10 runs changed | `--where p3=4 --limit 0` "
              "| dashboard runs page, first byte |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for s in listing:
        lines.append(f"| {s['runs']:,} | {s['cold']:.2f} s | {s['warm']:.3f} s | "
                     f"{s['changed']:.3f} s | {s['where']:.2f} s | "
                     f"{s['ui_first_byte']:.3f} s |")  # fmt: skip
    lines += ["", "| queued runs | `xp queue` |", "| ---: | ---: |"]
    lines += [f"| {s['queued']:,} | {s['queue']:.3f} s |" for s in queue]
    if len(listing) >= 2:
        small, large = listing[0], listing[-1]
        lines += ["", f"- Warm `xp ls` from {small['runs']:,} to {large['runs']:,} runs: "
                  f"{large['warm'] / small['warm']:.2f}x (goal: at most 1.5x; at most 0.3 s), "
                  f"cold at {large['runs']:,}: {large['cold']:.1f} s (goal: at most 10 s). "
                  "The change journal (DESIGN.md) replaces statting every run folder. "
                  f"Dashboard runs page at {large['runs']:,}: first byte in "
                  f"{large['ui_first_byte']:.3f} s (goal: at most 0.3 s)."]  # fmt: skip
    if queue:
        most = queue[-1]
        lines.append(f"- `xp queue` with {most['queued']:,} queued: {most['queue']:.3f} s warm "
                     "(goal: at most 0.3 s); the markers it read are kept on local disk, "
                     "each by its file's inode, mtime and size (DESIGN.md, \"Listing at "
                     "scale\").")  # fmt: skip
    if len(startup) >= 2:
        small, large = startup[0], startup[-1]
        grown = (large["xp_run"] - large["plain"]) - (small["xp_run"] - small["plain"])
        lines.append(f"- Start-up from {small['files']:,} to {large['files']:,} files: "
                     f"+{(small['xp_run'] - small['plain']) * 1000:.0f} ms -> "
                     f"+{(large['xp_run'] - large['plain']) * 1000:.0f} ms "
                     f"(`xp run`; {grown * 1000:+.0f} ms for 100x the files; goal: grows with "
                     "what changed, not with the project's size). From 20,000 tracked files a "
                     "watcher process tells each snapshot which paths changed, so git stats "
                     "only those (DESIGN.md, \"Snapshots that cost what changed\"); below, "
                     "`git status` stats every tracked file (~1 ms per 1,000).")  # fmt: skip
    lines += [f"- Medians of {r['reps']}. Command: `python benchmarks/bench_growth.py --out "
              "BENCHMARKS.md` (part of `make bench`).", "", ""]  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--files", default="1000,10000,100000")
    parser.add_argument("--runs", default="10000,100000")
    parser.add_argument("--queued", default="1000,10000")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x]

    with tempfile.TemporaryDirectory(prefix="xpbench-growth-") as work:
        result = {
            "reps": args.reps,
            "listing": scenario_listing(Path(work), ints(args.runs), args.reps),
            "queue": scenario_queue(Path(work), ints(args.queued), args.reps),
            "startup": scenario_startup(Path(work), ints(args.files), args.reps),
        }
    print(json.dumps(result))
    section = render_growth(result)
    print("\n".join(section))
    if args.out:
        args.out.write_text(splice(args.out.read_text(), section, "## 14. Growth"))


if __name__ == "__main__":
    main()
