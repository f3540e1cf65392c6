#!/usr/bin/env bash
# `make demo`: the bundled example, end to end, in a fresh temporary git project.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
project="$(mktemp -d "${TMPDIR:-/tmp}/xp-demo.XXXXXX")"
cp -r "$here/cifar-toy/." "$project/"
cd "$project"
git init -q -b main
git add -A
git -c user.name=demo -c user.email=demo@example.com commit -q -m "cifar-toy example"
echo "== xp init"; xp init
git add -A && git -c user.name=demo -c user.email=demo@example.com commit -q -m "xp init"
echo "== xp run --dry-run"; xp run experiments/cifar/01_baseline.xp.toml --dry-run
echo "== xp run"; xp run experiments/cifar/01_baseline.xp.toml
echo "== xp run (typed config)"; xp run experiments/cifar/02_typed.xp.toml
echo "== xp ls"; xp ls
echo "== xp diff"; xp diff c1fa02/1 c1fa02/4
echo "== the queue, on 4 fake GPUs (GPU 1 busy with a colleague's job)"
python -m xpkit.capture.fake_smi --install "$project/.fake-gpus"
export PATH="$project/.fake-gpus:$PATH" XP_FAKE_GPUS="$project/.fake-gpus/gpus.json"
export XP_GPU_PROBE=nvidia-smi XP_GPU_GRACE=1
echo /.fake-gpus/ >> .git/info/exclude
xp submit experiments/cifar/01_baseline.xp.toml --gpus 1
xp queue
xp worker --once
xp ls --columns name,status,params.lr,seed,test_acc --limit 2
echo "== xp report --all"; xp report --all
echo; sed -n '1,/^## Curves/p' experiments/cifar/01_baseline.md
echo
echo "Demo project: $project"
echo "Its runs:     $project/runs"
xp_bin="$(command -v xp)"  # the venv's: a new shell does not have it on PATH
echo "Try (in any shell): cd $project && $xp_bin show c1fa00/1 && $xp_bin logs c1fa00/1"
echo "  or put xpkit on your PATH first: source $(dirname "$xp_bin")/activate"
echo "Dashboard: pip install -e '.[ui]' (make test installs it), then: cd $project && $xp_bin ui --open"
echo "Each make demo makes a new folder; old ones: rm -rf ${TMPDIR:-/tmp}/xp-demo.*"
