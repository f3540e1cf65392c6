from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from xpkit.capture import gpus
from xpkit.capture.env import CaptureWarning, capture_env, collect_env_vars
from xpkit.redact import redact_argv, redact_command, redact_env, secret_option_name


def test_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TODOIST_API_TOKEN", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("DB_PASSWORD", "pw")
    monkeypatch.setenv("HTTP_AUTHORIZATION", "Bearer x")
    monkeypatch.setenv("MY_SETTING", "visible")
    variables = collect_env_vars()["variables"]
    assert variables["TODOIST_API_TOKEN"] == "***"
    assert variables["AWS_SECRET_ACCESS_KEY"] == "***"
    assert variables["DB_PASSWORD"] == "***"
    assert variables["HTTP_AUTHORIZATION"] == "***"
    assert variables["MY_SETTING"] == "visible"
    assert "hunter2" not in str(variables)


def test_redact_matches_any_case() -> None:
    assert redact_env({"github_token": "x", "passwd_file": "y", "PATH": "/bin"}) == {
        "PATH": "/bin",
        "github_token": "***",
        "passwd_file": "***",
    }


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("postgres://alice:pw@db:5432/x", "postgres://alice:***@db:5432/x"),
        ("http://proxy:3128", "http://proxy:3128"),  # no credentials: kept
        ("use ghp_" + "a" * 36 + " here", "use *** here"),
        ("xoxb-1234567890-abcdefghij", "***"),
        ("AKIAABCDEFGHIJKLMNOP", "***"),
        ("hf_" + "b" * 34, "***"),
        ("sk-proj-" + "c" * 40, "***"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijk", "***"),
        ("0123456789abcdef0123456789abcdef01234567", "0123456789abcdef0123456789abcdef01234567"),
    ],
    ids=["url-password", "url-plain", "github", "slack", "aws", "hf", "openai", "jwt", "git-sha"],
)
def test_values_are_redacted_by_shape(value: str, shown: str) -> None:
    assert redact_env({"SOMETHING": value}) == {"SOMETHING": shown}


def test_options_are_redacted_by_name_not_by_lookalikes() -> None:
    argv = ["train.py", "--api-key", "k1", "--token=k2", "password=k3", "--max-tokens", "5",
            "--sort-key", "loss", "--wandb-key", "k4", "--auth", "--lr", "0.1"]  # fmt: skip
    assert redact_argv(argv) == [
        "train.py", "--api-key", "***", "--token=***", "password=***", "--max-tokens", "5",
        "--sort-key", "loss", "--wandb-key", "***", "--auth", "--lr", "0.1",
    ]  # fmt: skip
    assert redact_command("python t.py --lr 1") == "python t.py --lr 1"  # unchanged, same text
    assert redact_command("python t.py --password 'a b'") == "python t.py --password '***'"
    assert not secret_option_name("tokenizer") and secret_option_name("db.password")


def test_full_capture_has_every_section() -> None:
    env = capture_env()
    assert set(env) >= {"python", "platform", "host", "gpus", "packages", "env"}
    assert env["host"]["cpu_count"] >= 1
    assert env["host"]["memory_bytes"] > 0
    assert any(p.startswith("click==") for p in env["packages"]["packages"])


def test_failing_collector_is_skipped_with_a_warning() -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("no such device")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = capture_env({"ok": lambda: {"a": 1}, "broken": broken})
    assert env["ok"] == {"a": 1}
    assert "broken" not in env
    assert "no such device" in env["skipped"]["broken"]
    assert any(issubclass(w.category, CaptureWarning) for w in caught)


def test_fake_nvidia_smi_is_parsed(fake_gpus: Path) -> None:
    report = gpus.probe()
    assert report.source == "nvidia-smi"
    assert report.driver == "550.54.15"
    assert report.cuda == "12.4"
    assert [g.name for g in report.gpus] == ["NVIDIA Fake A100"] * 2
    assert report.gpus[0].processes == []
    assert report.gpus[1].processes[0].pid == 4242
    assert report.gpus[1].memory_used_mib == 20480


def test_gpu_capture_in_env_json(fake_gpus: Path) -> None:
    env = capture_env()
    assert env["gpus"]["cuda"] == "12.4"
    assert env["gpus"]["gpus"][0]["memory_total_mib"] == 40960
    assert "processes" not in env["gpus"]["gpus"][0]


def test_no_gpu_tools_means_no_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XP_GPU_PROBE", "auto")
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi; NVML absent on CI
    report = gpus.probe()
    assert report.source in ("none", "nvml")


def test_asking_for_missing_nvidia_smi_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XP_GPU_PROBE", "nvidia-smi")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(gpus.GpuProbeError, match="not on PATH"):
        gpus.probe()
