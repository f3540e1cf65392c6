"""One error hierarchy. Messages say what went wrong, where, and what is valid.

The CLI turns every `XpError` into a clean one-paragraph message and exit code 2;
nothing below the CLI ever exits the program.
"""

from __future__ import annotations


class XpError(Exception):
    """Base of every error xpkit reports to a user."""

    exit_code = 2


class ConfigError(XpError):
    """xp.toml, pyproject [tool.xp], an experiment file or an env var is invalid."""


class BuildError(XpError):
    """A config could not be turned into objects."""


class GitError(XpError):
    """The project is not a git repository, or git failed."""


class RunError(XpError):
    """A run could not be created, found or started."""


class StoreError(XpError):
    """The runs root or a run directory cannot be read or written."""


class QueueError(XpError):
    """The job queue is in a state that forbids the request."""


class HookError(XpError):
    """A notification hook is misconfigured."""
