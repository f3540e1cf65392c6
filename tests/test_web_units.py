"""Units of the dashboard that need no server: thinning, paths, log reading."""

from __future__ import annotations

import math
from array import array
from pathlib import Path

from xpkit.web.files import _whole_characters, inside, read_log
from xpkit.web.series import window
from xpkit.web.server import is_loopback


def test_window_keeps_every_point_when_few_and_thins_keeping_extremes() -> None:
    steps = array("q", range(10))
    values = array("d", [float(i) for i in range(10)])
    assert window(steps, values)["x"] == list(range(10))
    steps = array("q", range(100_000))
    values = array("d", [0.0] * 100_000)
    values[54_321], values[7] = 9.0, -3.0
    thinned = window(steps, values, max_points=500)
    assert thinned["thinned"] and len(thinned["x"]) <= 500 and thinned["total"] == 100_000
    assert 9.0 in thinned["y"] and -3.0 in thinned["y"]
    assert thinned["x"] == sorted(thinned["x"])


def test_window_selects_a_step_range_and_turns_non_finite_values_into_gaps() -> None:
    steps = array("q", range(0, 100, 10))
    values = array("d", [1.0, math.nan, math.inf, 4, 5, 6, 7, 8, 9, 10])
    part = window(steps, values, x0=5, x1=35)
    assert part["x"] == [10, 20, 30] and part["y"] == [None, None, 4.0]
    shuffled = window(array("q", [5, 1, 3]), array("d", [5, 1, 3]), x0=2, x1=5)
    assert shuffled["x"] == [5, 3]


def test_inside_refuses_every_way_out(tmp_path: Path) -> None:
    base = tmp_path / "run"
    (base / "artifacts").mkdir(parents=True)
    (base / "artifacts" / "ok.txt").write_text("ok")
    (tmp_path / "secret").write_text("no")
    (base / "artifacts" / "link").symlink_to(tmp_path / "secret")
    assert inside(base, "artifacts/ok.txt") == (base / "artifacts" / "ok.txt").resolve()
    for bad in ("../secret", "artifacts/../../secret", "/etc/passwd", "artifacts/link",
                "artifacts//ok.txt", "", "artifacts", "a\x00b"):  # fmt: skip
        assert inside(base, bad) is None, bad


def test_read_log_follows_from_an_offset_without_splitting_characters(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes("é".encode() + b"\x1b[31mred\x1b[0m\n" + "€".encode()[:2])
    text, offset = read_log(log, -1)
    assert text == "éred\n" and offset == len("éred\n".encode()) + len(b"\x1b[31m\x1b[0m")
    with log.open("ab") as f:
        f.write("€".encode()[2:] + b"!\n")
    more, _ = read_log(log, offset)
    assert more == "€!\n"
    assert _whole_characters("a😀".encode()[:-1]) == 1
    assert read_log(tmp_path / "missing.log", 0) == ("", 0)


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "::", "example.org"))
