"""The runs root's change journal: a warm listing re-reads only the runs that changed,
and falls back to statting every run folder whenever the journal cannot be trusted."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from xpkit.store import journal
from xpkit.store import rundir as rd
from xpkit.store.index import UNSETTLED_SECONDS, RunIndex

HOST = journal.host_tag()


def make_run(root: Path, name: str, status: str = "finished", acc: float = 0.5) -> rd.RunDir:
    path = root / name
    path.mkdir(parents=True)
    run = {"name": name, "experiment_id": name[:6], "trial": int(name[7:10]), "status": status,
           "params": {}, "created": time.time(), "experiment": {"name": "e"}}  # fmt: skip
    rd.write_json_atomic(path / rd.RUN_JSON, run)
    rd.write_json_atomic(path / rd.SUMMARY_JSON, {"acc": acc})
    settle(path)
    return rd.RunDir(path)


def settle(path: Path, seconds: float = 60) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def by_hand(run: rd.RunDir, acc: float) -> None:
    """Change a run's summary the way `xp` never does: no journal line, folder mtime kept."""
    mtime = run.path.stat().st_mtime_ns
    (run.file(rd.SUMMARY_JSON)).write_text(f'{{"acc": {acc}}}')
    os.utime(run.path, ns=(mtime, mtime))


def accs(index: RunIndex) -> dict[str, float]:
    return {row.name: row.summary.get("acc") for row in index.rows()}


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for trial in range(1, 6):
        make_run(root, f"abc123_{trial:03d}_x")
    settle(root)
    return root


def warm_index(root: Path) -> RunIndex:
    index = RunIndex(root)
    index.refresh()  # first use: every folder statted, journal offsets taken
    time.sleep(0.01)
    return index


def test_a_warm_refresh_reads_what_xp_changed_and_nothing_else(runs: Path) -> None:
    index = warm_index(runs)
    by_hand(rd.RunDir(runs / "abc123_001_x"), 0.1)  # not journaled: a warm refresh misses it
    rd.RunDir(runs / "abc123_002_x").update_run(status="failed")
    rd.RunDir(runs / "abc123_003_x").write_json(rd.SUMMARY_JSON, {"acc": 0.9})
    index.refresh()
    assert {r.name: r.status for r in index.rows()}["abc123_002_x"] == "failed"
    assert accs(index)["abc123_003_x"] == 0.9
    assert accs(index)["abc123_001_x"] == 0.5  # proof that untouched runs were not re-read
    index.refresh()
    settle(runs / "abc123_001_x", 30)  # its folder's mtime moved, as with a copy by hand
    index.refresh()
    assert accs(index)["abc123_001_x"] == 0.5  # still not statted
    index.refresh(rescan=True)  # `xp ls --rescan`: every folder statted
    assert accs(index)["abc123_001_x"] == 0.1
    lines = (journal.journal_dir(runs) / f"{HOST}.0.log").read_text().split()
    assert lines == ["abc123_002_x"] * 2 + ["abc123_003_x"] * 2  # before and after each
    index.close()


def test_new_and_removed_runs_are_found_through_the_runs_roots_mtime(runs: Path) -> None:
    index = warm_index(runs)
    make_run(runs, "abc123_006_x")
    (runs / "abc123_001_x" / rd.RUN_JSON).unlink()
    (runs / "abc123_001_x" / rd.SUMMARY_JSON).unlink()
    (runs / "abc123_001_x").rmdir()
    index.refresh()
    assert sorted(accs(index)) == [f"abc123_{t:03d}_x" for t in range(2, 7)]
    index.close()


def test_a_live_runs_unjournaled_summary_is_seen_through_its_folder(runs: Path) -> None:
    live = make_run(runs, "abc123_007_x", status="running")
    index = warm_index(runs)
    live.write_json(rd.SUMMARY_JSON, {"acc": 0.7}, note=False)  # the periodic flush
    index.refresh()
    assert accs(index)["abc123_007_x"] == 0.7
    index.close()


def test_a_writer_killed_after_its_change_but_before_its_second_line(runs: Path) -> None:
    """The line before the change is seen by a reader before the change lands: the reader
    re-reads that run for UNSETTLED_SECONDS, so the change is still found."""
    index = warm_index(runs)
    run = rd.RunDir(runs / "abc123_004_x")
    journal.note(run.path)  # the line before; the writer is slow...
    index.refresh()
    assert accs(index)["abc123_004_x"] == 0.5
    by_hand(run, 0.4)  # ...its change lands, then it is killed: no line after
    index.refresh()
    assert accs(index)["abc123_004_x"] == 0.4
    time.sleep(UNSETTLED_SECONDS + 0.1)
    index.refresh()
    by_hand(run, 0.3)  # settled: no longer re-read on every refresh
    index.refresh()
    assert accs(index)["abc123_004_x"] == 0.4
    index.close()


@pytest.mark.parametrize("damage", ["truncated", "replaced", "deleted"])
def test_a_damaged_journal_makes_the_reader_stat_every_run(runs: Path, damage: str) -> None:
    index = warm_index(runs)
    rd.RunDir(runs / "abc123_002_x").update_run(tags=["a"])
    index.refresh()
    by_hand(rd.RunDir(runs / "abc123_001_x"), 0.2)
    settle(runs / "abc123_001_x", 30)  # a new mtime, as a copy from elsewhere would have
    file = journal.journal_dir(runs) / f"{HOST}.0.log"
    if damage == "truncated":
        file.write_text("")
    elif damage == "replaced":
        file.unlink()
        file.write_text("abc123_003_x\n" * 10)
    else:
        for path in journal.journal_dir(runs).iterdir():
            path.unlink()
        journal.journal_dir(runs).rmdir()
    index.refresh()
    assert accs(index)["abc123_001_x"] == 0.2
    # ...and the journal is trusted again afterwards (a new file where one was deleted).
    rd.RunDir(runs / "abc123_005_x").write_json(rd.SUMMARY_JSON, {"acc": 0.55})
    index.refresh()
    assert accs(index)["abc123_005_x"] == 0.55
    index.close()


def test_other_hosts_journals_are_read_and_junk_lines_ignored(runs: Path) -> None:
    index = warm_index(runs)
    run = rd.RunDir(runs / "abc123_003_x")
    by_hand(run, 0.33)
    other = journal.journal_dir(runs) / "gpu-node-7.0.log"
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text("../../etc/passwd\n\x00garbage\nabc123_003_x\nabc123_999_gone\n")
    index.refresh()
    assert accs(index)["abc123_003_x"] == 0.33
    assert "abc123_999_gone" not in accs(index)
    index.close()


def test_a_long_pause_means_a_full_scan(runs: Path) -> None:
    index = warm_index(runs)
    state = index._meta("journal")
    index._set_meta("journal", {**state, "checked": time.time() - journal.RETENTION_S - 1})
    by_hand(rd.RunDir(runs / "abc123_002_x"), 0.22)
    settle(runs / "abc123_002_x", 30)
    index.refresh()
    assert accs(index)["abc123_002_x"] == 0.22
    index.close()


def test_journals_roll_over_and_old_generations_go(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "MAX_BYTES", 200)
    index = warm_index(runs)
    run = rd.RunDir(runs / "abc123_001_x")
    for i in range(30):  # 60 lines of 13 bytes: several generations
        run.update_run(tags=[str(i)])
    folder = journal.journal_dir(runs)
    generations = sorted(journal.parse_file_name(p.name)[1] for p in folder.iterdir())  # type: ignore[index]
    assert len(generations) >= 3 and generations == list(range(len(generations)))
    index.refresh()
    assert {r.name: r.tags for r in index.rows()}["abc123_001_x"] == ["29"]
    # Generations older than the retention go at the next roll-over, the newest two stay.
    old = time.time() - journal.RETENTION_S - 60
    for path in folder.iterdir():
        os.utime(path, (old, old))
    for i in range(20):
        run.update_run(tags=[f"late{i}"])
    left = {journal.parse_file_name(p.name)[1]: p.stat().st_mtime for p in folder.iterdir()}  # type: ignore[index]
    stale = {g for g, mtime in left.items() if mtime < time.time() - journal.RETENTION_S}
    assert stale <= set(sorted(left)[-2:]) and min(left) > max(generations) - 2
    index.refresh()
    assert {r.name: r.tags for r in index.rows()}["abc123_001_x"] == ["late19"]
    index.close()


def test_a_forked_child_writes_its_own_lines(runs: Path) -> None:
    index = warm_index(runs)
    rd.RunDir(runs / "abc123_001_x").update_run(tags=["parent"])  # opens the journal here
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        rd.RunDir(runs / "abc123_002_x").update_run(tags=["child"])
        os._exit(0)
    os.waitpid(pid, 0)
    index.refresh()
    assert {r.name: r.tags for r in index.rows()}["abc123_002_x"] == ["child"]
    index.close()


def test_staged_and_trashed_runs_write_no_lines(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    staged = make_run(root / ".xp" / "staging", "abc123_001_x")
    staged.update_run(tags=["x"])
    assert not journal.journal_dir(root).exists()
    assert not (root / ".xp" / "staging" / ".xp").exists()


def test_a_hidden_runs_root_is_journaled_too(tmp_path: Path) -> None:
    root = tmp_path / ".runs"  # `runs = ".runs"` in xp.toml
    make_run(root, "abc123_001_x")
    settle(root)
    index = warm_index(root)
    rd.RunDir(root / "abc123_001_x").write_json(rd.SUMMARY_JSON, {"acc": 0.75})
    index.refresh()
    assert accs(index)["abc123_001_x"] == 0.75
    index.close()
