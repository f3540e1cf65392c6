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
mkdir -p "$project/.fake-gpus"
printf '#!/bin/sh\nexec python -m xpkit.capture.fake_smi "$@"\n' > "$project/.fake-gpus/nvidia-smi"
chmod +x "$project/.fake-gpus/nvidia-smi"
cat > "$project/.fake-gpus/gpus.json" <<'JSON'
{"gpus": [{"name": "Fake A100"},
          {"name": "Fake A100", "memory_used_mib": 30000, "processes": [{"pid": 4242, "used_mib": 30000}]},
          {"name": "Fake A100"}, {"name": "Fake A100"}]}
JSON
export PATH="$project/.fake-gpus:$PATH" XP_FAKE_GPUS="$project/.fake-gpus/gpus.json"
export XP_GPU_PROBE=nvidia-smi XP_GPU_GRACE=1
echo /.fake-gpus/ >> .git/info/exclude
xp submit experiments/cifar/01_baseline.xp.toml --gpus 1
xp queue
xp worker --once
xp ls --columns name,status,lr,seed,test_acc --limit 2
echo "== xp report --all"; xp report --all
echo; sed -n '1,/^## Curves/p' experiments/cifar/01_baseline.md
echo
echo "Demo project: $project"
echo "Its runs:     $project/runs"
echo "Try: cd $project && xp show c1fa00/1 && xp logs c1fa00/1 && xp rerun c1fa00/1 --check"
echo "Dashboard: pip install -e '.[ui]' (make test installs it), then: cd $project && xp ui --open"
