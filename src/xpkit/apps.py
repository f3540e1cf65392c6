"""Programs that compose their own config: Hydra apps (`@hydra.main`) and LightningCLI
scripts, named by `app = "hydra"` / `app = "lightning"` in an experiment file.

For such a program xpkit
- passes each grid or [[runs]] key that the command does not use as a {placeholder}
  as the program's own override (`optimizer.lr=0.1` for Hydra, `--model.lr=0.1` for
  LightningCLI; a Hydra key without dots picks a config group: `model=resnet18`);
- records the overrides written in the command as params too, so `xp ls` shows them;
- points the program's output at the run directory (`hydra.run.dir`,
  `--trainer.default_root_dir`) unless the command already does;
- takes the config the program composed and saved (Hydra's `.hydra/config.yaml`,
  LightningCLI's `config.yaml`) as the run's config.json when the program ends, so
  `xp diff` compares composed configs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from xpkit.values import parse_scalar

APPS = ("hydra", "lightning")
# A Hydra override: key=value, +key=value (add), ++key=value (add or set); ~key deletes.
_HYDRA_OVERRIDE = re.compile(r"^\+{0,2}([A-Za-z_][\w.\-/@]*)=(.*)$", re.S)
_LIGHTNING_OPTION = re.compile(r"^--([A-Za-z_][\w\-]*(?:\.[\w\-]+)+)(?:=(.*))?$", re.S)
_OUTPUT_OPTION = {"hydra": "hydra.run.dir", "lightning": "trainer.default_root_dir"}


def override_args(app: str, values: dict[str, Any]) -> str:
    """The command-line text that passes `values` as the program's overrides."""
    parts = []
    for key, value in values.items():
        text = _text(value)
        parts.append(shlex.quote(f"{key}={text}" if app == "hydra" else f"--{key}={text}"))
    return "".join(f" {p}" for p in parts)


def output_args(app: str, command: str) -> str:
    """Where the program writes its outputs (and its saved config): the run directory,
    unless the command says otherwise. `$XP_RUN_DIR` is expanded by the shell."""
    option = _OUTPUT_OPTION[app]
    if option in command:
        return ""
    return f' {option}="$XP_RUN_DIR"' if app == "hydra" else f' --{option}="$XP_RUN_DIR"'


def overrides_in(app: str, command: str) -> dict[str, Any]:
    """The overrides written in a (rendered) command, as params: Hydra's `key=value`
    tokens, LightningCLI's `--a.b=value` / `--a.b value` options; xpkit's own output
    option and Hydra's `hydra.*` settings are left out."""
    try:
        tokens = shlex.split(command)
    except ValueError:
        return {}
    found: dict[str, Any] = {}
    for index, token in enumerate(tokens):
        if app == "hydra":
            match = _HYDRA_OVERRIDE.match(token)
            if match and not match.group(1).startswith("hydra."):
                found[match.group(1)] = parse_scalar(match.group(2))
            continue
        option = _LIGHTNING_OPTION.match(token)
        if not option or option.group(1) == _OUTPUT_OPTION["lightning"]:
            continue
        value = option.group(2)
        if value is None:
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if following is None or following.startswith("--"):
                continue
            value = following
        found[option.group(1)] = parse_scalar(value)
    return found


def saved_config_path(app: str, run_dir: Path) -> Path | None:
    """The config the program saved in the run directory, if it did: the newest."""
    if app == "hydra":
        candidates = [run_dir / ".hydra" / "config.yaml"]
    else:
        versions = run_dir.glob("lightning_logs/version_*/config.yaml")  # with a logger
        candidates = [run_dir / "config.yaml", *versions]
    found = [p for p in candidates if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def composed_config(app: str, run_dir: Path) -> dict[str, Any] | None:
    """The composed config as a dict, or None when the program saved none (it failed
    before composing, or it is not the app the experiment says)."""
    from xpkit.config.files import load_config
    from xpkit.errors import ConfigError

    path = saved_config_path(app, run_dir)
    if path is None:
        return None
    try:
        config = load_config(path)
    except ConfigError:
        return None
    trainer = config.get("trainer")
    if app == "lightning" and isinstance(trainer, dict):
        _drop_own_root(trainer, run_dir)
    return config


def _drop_own_root(trainer: dict[str, Any], run_dir: Path) -> None:
    """xpkit's own --trainer.default_root_dir: it differs between any two runs."""
    if trainer.get("default_root_dir") == str(run_dir):
        del trainer["default_root_dir"]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
