from __future__ import annotations

import pytest

from xpkit.config.schema import schema_for
from xpkit.errors import BuildError


def test_schema_of_a_nested_class() -> None:
    schema = schema_for("buildable.Model")
    assert schema["properties"]["_target_"]["default"] == "buildable.Model"
    assert schema["required"] == ["_target_", "encoder", "heads"]
    assert schema["properties"]["encoder"] == {"$ref": "#/$defs/buildable.Encoder"}
    encoder = schema["$defs"]["buildable.Encoder"]
    assert encoder["properties"]["depth"] == {"type": "integer"}
    assert encoder["properties"]["width"] == {"type": "number", "default": 1.0}
    assert encoder["properties"]["act"] == {"enum": ["relu", "gelu"], "default": "relu"}
    assert encoder["additionalProperties"] is False
    assert schema["properties"]["extra"] == {
        "anyOf": [{"type": "object", "additionalProperties": {"type": "number"}}, {"type": "null"}],
        "default": None,
    }


def test_schema_of_a_dataclass_and_kwargs() -> None:
    data = schema_for("buildable:Data")
    assert data["properties"]["shapes"]["prefixItems"] == [{"type": "integer"}] * 2
    assert data["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    flexible = schema_for("buildable.Flexible")
    assert flexible["additionalProperties"] == {"type": "integer"}


def test_schema_of_unknown_target_is_a_clear_error() -> None:
    with pytest.raises(BuildError, match="close matches: Encoder"):
        schema_for("buildable.Encodr")
