from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import FakeGpus
from xpkit.errors import QueueError
from xpkit.queue.allocate import GpuAllocator
from xpkit.queue.files import MarkerCache, claim, enqueue, me, queued_runs, read_claim
from xpkit.queue.listing import listed_queue
from xpkit.queue.priority import set_priority
from xpkit.queue.recover import cancel
from xpkit.store import rundir as rd
from xpkit.store.create import NewRun, Provenance, create_run


def make(runs: Path, slug: str = "x") -> rd.RunDir:
    return create_run(runs, NewRun("que123", slug, "true", ["true"]), Provenance(runs, None, {}))


def test_queue_order_priority_then_oldest(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    a, b, c = make(runs, "a"), make(runs, "b"), make(runs, "c")
    enqueue(runs, a, priority=0, gpus=0, labels=[])
    time.sleep(0.01)
    enqueue(runs, b, priority=5, gpus=1, labels=["a100"])
    enqueue(runs, c, priority=0, gpus=0, labels=[])
    queued, problems = queued_runs(runs)
    assert [q.name for q in queued] == [b.name, a.name, c.name] and problems == []
    assert queued[0].gpus == 1 and queued[0].labels == ["a100"]


def test_a_cached_queue_listing_sees_every_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`xp queue` keeps the markers it read (by inode, mtime and size): a run queued,
    taken or given another priority is listed at once, a run whose folder is gone
    (trashed while queued) is dropped, and a broken cache is a full listing."""
    monkeypatch.setenv("XP_CACHE_DIR", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    a, b, c = make(runs, "a"), make(runs, "b"), make(runs, "c")
    enqueue(runs, a, priority=0, gpus=0, labels=[])
    enqueue(runs, b, priority=1, gpus=2, labels=["x"])
    folder = runs / ".xp" / "queue"

    def settle() -> None:  # as if every marker were a minute old: they are kept
        past = time.time() - 60
        for marker in folder.iterdir():
            os.utime(marker, (past, past))

    def names() -> list[str]:
        return [q.name for q in listed_queue(runs)[0]]

    assert names() == [b.name, a.name]
    assert not (tmp_path / "cache" / "queue").exists()  # written just now: not kept
    settle()
    assert names() == [b.name, a.name]
    (kept,) = (tmp_path / "cache" / "queue").iterdir()
    assert listed_queue(runs)[0][0].labels == ["x"]
    marker_b = folder / b.name  # edited in place, its size and mtime kept: not read again
    before = marker_b.stat()
    marker_b.write_text(marker_b.read_text().replace('"priority": 1,', '"priority": 7,'))
    os.utime(marker_b, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert listed_queue(runs)[0][0].priority == 1  # the kept marker: the cache is used
    enqueue(runs, c, priority=9, gpus=0, labels=[])
    assert names() == [c.name, b.name, a.name]
    settle()
    assert names() == [c.name, b.name, a.name]
    enqueue(runs, a, priority=10, gpus=0, labels=[])  # a new priority: a rewritten marker
    assert names() == [a.name, c.name, b.name]
    settle()
    names()
    assert claim(runs, c.name, me("worker")) is True  # taken: its marker removed
    assert names() == [a.name, b.name]
    settle()
    names()
    shutil.rmtree(b.path)  # gone while queued, its marker left
    queued, problems = listed_queue(runs)
    assert [q.name for q in queued] == [a.name] and "deleted while queued" in problems[0]
    settle()
    names()
    kept.write_text("{broken")
    assert names() == [a.name]
    kept.write_text(json.dumps({a.name: 5, "x": [[1, 2, 3], 0, 0, [], 0.0]}))
    assert names() == [a.name]


def test_claims_are_exclusive(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = make(runs)
    enqueue(runs, run, priority=0, gpus=0, labels=[])
    assert claim(runs, run.name, me("worker")) is True
    assert claim(runs, run.name, me("cancel")) is False
    assert queued_runs(runs)[0] == []
    held = read_claim(run)
    assert held is not None and held["kind"] == "worker" and held["pid"] == os.getpid()


def test_deleted_run_directory_is_dropped_from_the_queue(tmp_path: Path) -> None:
    import shutil

    runs = tmp_path / "runs"
    run = make(runs)
    enqueue(runs, run, priority=0, gpus=0, labels=[])
    shutil.rmtree(run.path)
    queued, problems = queued_runs(runs)
    assert queued == [] and "deleted while queued" in problems[0]


def test_cancel_queued_and_refuse_finished(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    queued, done = make(runs, "q"), make(runs, "d")
    enqueue(runs, queued, priority=0, gpus=0, labels=[])
    assert cancel(runs, queued) == "cancelled"
    assert queued.read_run()["status"] == "cancelled"
    done.update_run(status="finished")
    with pytest.raises(QueueError, match="is finished; only queued and running"):
        cancel(runs, done)


def test_free_gpu_rule(gpu_file: FakeGpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XP_GPU_GRACE", "30")
    allocator = GpuAllocator(state=tmp_path / "state")
    states = {s.index: s for s in allocator.states()}
    assert [i for i, s in states.items() if s.free] == [0, 2, 3]
    assert "process 4242" in states[1].why
    assert allocator.take(2, "run-a") == [0, 2]
    after = {s.index: s for s in allocator.states()}
    assert after[0].why == "held by run-a" and after[3].free
    assert allocator.take(2, "run-b") is None  # only GPU 3 is free
    allocator.release([0, 2], "run-a")
    assert {s.index: s for s in allocator.states()}[0].why.startswith("just handed out (free again")
    long_ago = time.time() - 31
    os.utime(tmp_path / "state" / "handed-0", (long_ago, long_ago))
    assert {s.index: s for s in allocator.states()}[0].free
    gpu_file.set([{"name": "A"}, {"name": "B", "memory_used_mib": 5000}])  # a colleague's job
    assert [s.free for s in allocator.states()] == [True, False]
    assert GpuAllocator(only=[1], state=tmp_path / "state").count() == 1


def test_a_dead_workers_hold_is_dropped(gpu_file: FakeGpus, tmp_path: Path) -> None:
    state = tmp_path / "state"
    allocator = GpuAllocator(state=state)
    (state / "held-0").write_text(json.dumps({"run": "ghost", "pid": 2**22 + 12345}))
    assert {s.index: s for s in allocator.states()}[0].free


@pytest.mark.parametrize("exit_code", [9, 0], ids=["fails", "exit-0"])
def test_garbage_from_nvidia_smi_means_cpu_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exit_code: int
) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        f"#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate'\nexit {exit_code}\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("XP_GPU_PROBE", "nvidia-smi")
    allocator = GpuAllocator(state=tmp_path / "state")
    with pytest.warns(UserWarning, match="GPU probe failed, running CPU-only"):
        assert allocator.count() == 0


def test_a_kept_marker_is_read_again_once_rewritten(tmp_path: Path) -> None:
    """The scheduler and `xp top` keep the markers they read between looks: a run given
    another priority (its marker taken and written again) is seen with it at the next
    look, however soon, and a marker left alone is not read again."""
    runs = tmp_path / "runs"
    a, b = make(runs, "a"), make(runs, "b")
    enqueue(runs, a, priority=0, gpus=0, labels=[])
    enqueue(runs, b, priority=0, gpus=0, labels=[])
    kept: MarkerCache = {}
    assert [q.name for q in queued_runs(runs, kept)[0]] == [a.name, b.name]
    set_priority(runs, b, 5)
    assert [(q.name, q.priority) for q in queued_runs(runs, kept)[0]] == [(b.name, 5), (a.name, 0)]
    past = time.time() - 60  # settled markers are kept: an edit that keeps all three is not seen
    for marker in (runs / ".xp" / "queue").iterdir():
        os.utime(marker, (past, past))
    queued_runs(runs, kept)
    marker = runs / ".xp" / "queue" / a.name
    st = marker.stat()
    marker.write_text(marker.read_text().replace('"priority": 0', '"priority": 9'))
    os.utime(marker, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [q.priority for q in queued_runs(runs, kept)[0]] == [5, 0]
    assert [q.priority for q in queued_runs(runs)[0]] == [9, 5]  # without the kept markers
