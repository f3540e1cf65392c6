"""`xp schema`."""

from __future__ import annotations

import json

import click


@click.command("schema")
@click.argument("target")
def schema_cmd(target: str) -> None:
    """Print the JSON Schema of TARGET's config (pkg.module:Class or pkg.module.Class),
    for editors to validate and complete config files.

    Example: xp schema mypkg.models:ResNet > schemas/resnet.json
    """
    import sys
    from pathlib import Path

    from xpkit.config.schema import schema_for

    sys.path.insert(0, str(Path.cwd()))  # the project's own modules, as `python -m` would
    click.echo(json.dumps(schema_for(target), indent=2))
