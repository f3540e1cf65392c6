"""Dependency injection: configs (JSON/YAML/TOML) → type-checked objects."""
