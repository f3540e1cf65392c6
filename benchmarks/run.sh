#!/usr/bin/env bash
# `make bench`: its own virtual environment with xpkit and the anchors (MLflow, Sacred),
# then every scenario side by side; rewrites BENCHMARKS.md. Sacred 0.8 imports
# pkg_resources, which setuptools 81 and later no longer ship. W&B, trackio and Aim are
# installed into their own virtualenvs under .bench/anchors by bench_trackers.py.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.bench/venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
fi
"$venv/bin/pip" install -q -e '.[plot,ray,ui,lightning,transformers,sweep,envs]' 'torch==2.13.0' 'playwright>=1.40' 'mlflow>=2.10' 'sacred>=0.8' 'hydra-core>=1.3' 'setuptools<81'
# Timed as users run it: a pip install compiles bytecode, an editable one writes it on
# first import. With PYTHONDONTWRITEBYTECODE set (some CI images) every xp process would
# compile its modules again (~0.09 s) while the anchors' pip-installed bytecode is used.
unset PYTHONDONTWRITEBYTECODE
"$venv/bin/python" -m compileall -q src >/dev/null
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" benchmarks/bench_core.py --out BENCHMARKS.md "$@"
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" benchmarks/bench_integrations.py --out BENCHMARKS.md "$@"
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" benchmarks/bench_sweep.py --out BENCHMARKS.md "$@"
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" benchmarks/bench_scale.py --out BENCHMARKS.md "$@"
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" benchmarks/bench_growth.py --out BENCHMARKS.md "$@"
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" benchmarks/bench_trackers.py --out BENCHMARKS.md "$@"
# Last: its environments' installs and deletions slow the disk for a minute after it.
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" benchmarks/bench_envs.py --out BENCHMARKS.md "$@"
