from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from xpkit.store import claims
from xpkit.store import rundir as rd
from xpkit.store.index import RunIndex, index_path, load_rows
from xpkit.store.query import filter_rows, parse_where, resolve_run, varying_params


def make_run(root: Path, name: str, params: dict[str, object], summary: dict[str, object],
             status: str = "finished", created: float | None = None) -> Path:  # fmt: skip
    path = root / name
    path.mkdir(parents=True)
    run = {"name": name, "experiment_id": name[:6], "trial": int(name[7:10]), "status": status,
           "params": params, "tags": ["t"], "created": created or time.time(),
           "experiment": {"name": "e"}}  # fmt: skip
    rd.write_json_atomic(path / rd.RUN_JSON, run)
    rd.write_json_atomic(path / rd.SUMMARY_JSON, summary)
    return path


def age(path: Path, seconds: float = 60) -> None:
    """Pretend the directory was last written a while ago (settled)."""
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_index_lists_filters_and_refreshes_incrementally(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for trial, lr in enumerate([0.1, 0.01, 0.1], start=1):
        age(make_run(root, f"abc123_{trial:03d}_x", {"lr": lr, "seed": 0}, {"acc": lr * 9}))
    rows, warnings = load_rows(root)
    assert len(rows) == 3 and warnings == []
    assert varying_params(rows) == ["lr"]
    matching = filter_rows(rows, conditions=(parse_where("lr=0.1"), parse_where("acc>0.5")))
    assert sorted(r.name for r in matching) == ["abc123_001_x", "abc123_003_x"]

    # A metadata change (atomic rename) is picked up; an untouched run is not re-read.
    index = RunIndex(root)
    index.refresh()
    untouched = root / "abc123_003_x"
    mtime = untouched.stat().st_mtime_ns
    (untouched / rd.SUMMARY_JSON).write_text("garbage, but not re-read")
    os.utime(untouched, ns=(mtime, mtime))  # an in-place write leaves the dir mtime alone
    rows_before = {r.name: r for r in index.rows()}
    rd.RunDir(root / "abc123_002_x").write_json(rd.SUMMARY_JSON, {"acc": 0.99})  # journaled
    index.refresh()
    rows_after = {r.name: r for r in index.rows()}
    assert rows_after["abc123_002_x"].summary == {"acc": 0.99}
    assert rows_after["abc123_003_x"].summary == rows_before["abc123_003_x"].summary

    # A finished run's file replaced by hand (not through xp) is found by a rescan.
    rd.write_json_atomic(root / "abc123_001_x" / rd.SUMMARY_JSON, {"acc": 0.5})
    index.refresh(rescan=True)
    assert {r.name: r for r in index.rows()}["abc123_001_x"].summary == {"acc": 0.5}
    index.close()


def test_deleting_the_index_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_run(root, "abc123_001_x", {"lr": 1}, {})
    assert len(load_rows(root)[0]) == 1
    index_path(root).unlink()
    assert len(load_rows(root)[0]) == 1


def test_removed_runs_disappear(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    path = make_run(root, "abc123_001_x", {}, {})
    assert len(load_rows(root)[0]) == 1
    (path / rd.RUN_JSON).unlink()
    (path / rd.SUMMARY_JSON).unlink()
    path.rmdir()
    assert load_rows(root)[0] == []


@pytest.mark.parametrize(
    "content", ['{"name": "abc123_002_bad", "sta', "", "[1, 2]", "\x00\xff"],
    ids=["half-written", "empty", "not-object", "binary"],
)  # fmt: skip
def test_corrupt_run_json_is_skipped_with_a_warning(tmp_path: Path, content: str) -> None:
    root = tmp_path / "runs"
    make_run(root, "abc123_001_ok", {}, {})
    bad = root / "abc123_002_bad"
    bad.mkdir()
    (bad / rd.RUN_JSON).write_text(content, errors="surrogateescape")
    rows, warnings = load_rows(root)
    assert [r.name for r in rows] == ["abc123_001_ok"]
    assert len(warnings) == 1 and "abc123_002_bad" in warnings[0]


def test_stale_heartbeat_shows_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    path = make_run(root, "abc123_001_x", {}, {}, status="running")
    rd.RunDir(path).beat()
    assert load_rows(root)[0][0].status == "running"
    stamp = time.time() - 3600
    os.utime(path / rd.HEARTBEAT, (stamp, stamp))
    assert load_rows(root)[0][0].status == "lost"


def test_a_dead_holder_on_this_host_shows_lost_at_once(tmp_path: Path) -> None:
    """A run's claim names its holder (`xp run`, a worker): on this host a holder that is
    gone, or whose pid a younger process now has, makes the run `lost` at once, with a
    fresh heartbeat; another host's holder is judged by the heartbeat alone."""
    root = tmp_path / "runs"
    path = make_run(root, "abc123_001_x", {}, {}, status="running")
    run_dir = rd.RunDir(path)
    run_dir.beat()
    here = os.uname().nodename
    dead = subprocess.Popen(["true"])
    dead.wait()
    me_started = claims.process_start(os.getpid())
    cases = [
        ({"host": here, "pid": os.getpid(), "pid_start": me_started}, "running"),
        ({"host": here, "pid": os.getpid(), "pid_start": None}, "running"),  # older claims
        ({"host": here, "pid": dead.pid, "pid_start": None}, "lost"),
        ({"host": here, "pid": os.getpid(), "pid_start": (me_started or 0) - 3600}, "lost"),
        ({"host": "elsewhere", "pid": dead.pid, "pid_start": None}, "running"),
    ]
    for claim, shown in cases:
        (path / rd.CLAIM).write_text(json.dumps({"kind": "run", "worker": "", **claim}))
        assert load_rows(root)[0][0].status == shown, claim
        assert rd.status_of(run_dir, run_dir.read_run()) == shown, claim
    stamp = time.time() - 3600  # the other host's holder stopped beating
    os.utime(path / rd.HEARTBEAT, (stamp, stamp))
    assert load_rows(root)[0][0].status == "lost"


def test_resolve_run_by_name_prefix_and_trial(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for name in ("abc123_001_a", "abc123_002_b", "abd999_001_c"):
        make_run(root, name, {}, {})
    assert resolve_run(root, "abc123_001_a").name == "abc123_001_a"
    assert resolve_run(root, "abc123_002").name == "abc123_002_b"
    assert resolve_run(root, "abc123/2").name == "abc123_002_b"
    assert resolve_run(root, "abd").name == "abd999_001_c"
    from xpkit.errors import RunError

    with pytest.raises(RunError, match="matches 3 runs"):
        resolve_run(root, "ab")
    with pytest.raises(RunError, match="no run matches"):
        resolve_run(root, "zzz")
    with pytest.raises(RunError, match="TRIAL must be a number"):
        resolve_run(root, "abc123/x")


def test_json_files_are_written_atomically(tmp_path: Path) -> None:
    """A reader racing the writer sees the old or the new file, never half of one (a
    plain write_text fails this: the reader catches it truncated or half-written), and
    a writer killed between writing and renaming leaves the old file whole."""
    import subprocess
    import sys
    import threading

    target = tmp_path / "f.json"
    big = {"values": list(range(20_000))}  # ~130 KB: written in several syscalls
    rd.write_json_atomic(target, big)
    torn: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                json.loads(target.read_text())
            except ValueError as e:
                torn.append(str(e))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(200):
            rd.write_json_atomic(target, {**big, "i": i})
    finally:
        stop.set()
        reader.join()
    assert torn == []
    killed = subprocess.run(
        [sys.executable, "-c", "import os, sys; from xpkit.store import rundir as rd; "
         "os.replace = lambda *a: os._exit(9); rd.write_json_atomic(rd.Path(sys.argv[1]), {'new': 1})",
         str(target)], check=False,
    )  # fmt: skip
    assert killed.returncode == 9 and json.loads(target.read_text())["i"] == 199
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["f.json"]
