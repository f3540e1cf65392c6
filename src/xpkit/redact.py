"""What looks like a credential, and how it is kept out of what xpkit records.

By name: environment variables and command options whose names say secret (`*_TOKEN`,
`--api-key`, `password=`, `SENTRY_DSN`, `*_WEBHOOK_URL`, …). By value: URLs with a
password (`scheme://user:pass@host`) and the shapes of well-known tokens (gitleaks and
git-secrets list the same families). A redacted value becomes MASK; a URL keeps its
user, host and path, only the password goes.
"""

from __future__ import annotations

import re
import shlex

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

MASK = "***"

# Environment variable names (substrings, any case): existing xpkit behaviour plus the
# connection strings that carry passwords.
SECRET_ENV_NAME = re.compile(
    r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|CREDENTIAL|AUTH|PRIVATE|DSN|WEBHOOK|_PASS$|^PASS|"
    r"^DATABASE_URL$|_DATABASE_URL$|COOKIE|SESSION",
    re.IGNORECASE,
)
# Option and parameter names, as words (`--api-key`, `hf_token=`, `db.password`), so
# that `max_tokens` or `keyboard` are not taken for secrets.
_WORDS = (
    r"(?:api|access|secret|private|ssh|encryption|wandb|hf|openai|anthropic|aws|azure|"
    r"github|gh|gitlab|slack|comet|neptune)_?key|apikey|key_?file|token|secret|"
    r"password|passwd|pwd|pass|passphrase|credentials?|auth|dsn|webhook(?:_url)?|cookie"
)
SECRET_OPTION_NAME = re.compile(rf"(?:^|_)(?:{_WORDS})(?:$|_)")
# ...unless the name ends in a word that says it holds a number about one:
# `pad_token_id`, `max_token_count`, `auth_type`.
NOT_SECRET_SUFFIX = re.compile(r"_(?:ids?|index|count|len|length|size|num|type)$")

TOKEN_SHAPES = re.compile(
    "|".join(
        (
            r"sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{16,}",  # OpenAI, Anthropic
            r"[sr]k_(?:live|test)_[A-Za-z0-9]{8,}|sk-(?:live|test)-\w+",  # Stripe-style
            r"gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}",  # GitHub
            r"glpat-[A-Za-z0-9_-]{20,}",  # GitLab
            r"xox[abposr]-[A-Za-z0-9-]{10,}",  # Slack tokens
            r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+",  # Slack webhooks
            r"(?:AKIA|ASIA)[A-Z0-9]{16}",  # AWS access key IDs
            r"hf_[A-Za-z0-9]{20,}",  # Hugging Face
            r"AIza[0-9A-Za-z_-]{30,}",  # Google API keys
            r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWTs
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        )
    )
)
# W&B API keys are 40 hex digits, which is also what a git commit looks like: they
# are caught by name (WANDB_API_KEY, --wandb-key), not by shape.
URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(?=@)")


def secret_env_name(name: str) -> bool:
    return bool(SECRET_ENV_NAME.search(name))


def secret_option_name(name: str) -> bool:
    """`--api-key`, `--hf_token`, `db.password`, `WANDB_KEY`: names that say secret."""
    word = re.sub(r"[^a-z0-9]+", "_", name.lower().lstrip("-").rsplit(".", 1)[-1])
    return bool(SECRET_OPTION_NAME.search(word)) and not NOT_SECRET_SUFFIX.search(word)


def looks_secret(value: str) -> bool:
    """Whether a value has the shape of a token or is a URL with a password."""
    return bool(TOKEN_SHAPES.search(value) or URL_PASSWORD.search(value))


def redact_text(text: str) -> str:
    """`text` with token shapes masked and URL passwords removed."""
    text = URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    return TOKEN_SHAPES.sub(MASK, text)


def redact_env(variables: dict[str, str]) -> dict[str, str]:
    """Environment variables with secret values masked: by name, then by value."""
    return {
        name: MASK if secret_env_name(name) else redact_text(value)
        for name, value in sorted(variables.items())
    }


def redact_argv(argv: list[str]) -> list[str]:
    """Arguments with secret values masked: the value of an option or `key=value` whose
    name says secret (`--api-key X`, `--token=X`, `password=X`), and token shapes."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            hide_next = False
            if not arg.startswith("-"):
                out.append(MASK)
                continue
        key, eq, _value = arg.partition("=")
        if eq and secret_option_name(key) and re.fullmatch(r"[-+~\w.]+", key):
            out.append(f"{key}={MASK}")
        elif arg.startswith("-") and not eq and secret_option_name(arg):
            out.append(arg)
            hide_next = True
        else:
            out.append(redact_text(arg))
    return out


def redact_command(command: str) -> str:
    """A shell command line with its secret values masked; unchanged when it has none."""
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: mask what has a shape
        return redact_text(command)
    masked = redact_argv(words)
    return command if masked == words else shlex.join(masked)


class Shown:
    """A run's command and params as records show them (secret values masked)."""

    __slots__ = ("argv", "command", "masked_params", "params")

    def __init__(self, command: str, argv: list[str] | None, params: dict[str, Any],
                 masked_params: list[str]) -> None:  # fmt: skip
        self.command, self.argv, self.params = command, argv, params
        self.masked_params = masked_params  # names of params whose values were masked

    def differs(self, command: str, argv: list[str] | None) -> bool:
        return self.command != command or self.argv != argv or bool(self.masked_params)


def shown_run(command: str, argv: list[str] | None, params: dict[str, Any]) -> Shown:
    """Mask what looks secret: options and `key=value` by name, token shapes, and the
    values of params whose names or values look secret (in the command too)."""
    masked = [
        key
        for key, value in params.items()
        if isinstance(value, str | int) and (secret_option_name(key) or looks_secret(str(value)))
    ]
    hidden = {str(params[key]) for key in masked if len(str(params[key])) >= 3}
    shown_params = {k: MASK if k in masked else v for k, v in params.items()}
    shown_argv = None
    if argv is not None:
        shown_argv = [MASK if a in hidden else a for a in redact_argv(argv)]
        shown_command = shlex.join(shown_argv)
    else:
        shown_command = redact_command(command)
        for value in sorted(hidden, key=len, reverse=True):
            shown_command = shown_command.replace(value, MASK)
    return Shown(shown_command, shown_argv, shown_params, masked)
