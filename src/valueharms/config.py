"""Load, default and validate the pipeline configuration against config/schema.yaml.

Defaults come from the schema. A user's config is merged over the fully defaulted
empty config (dicts merge key by key), so a study file sets only what differs, even
inside keys whose defaults differ per entry (e.g. the benchmarks).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def _with_defaults(cls: type) -> type:
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


# libyaml's loader where PyYAML has it: the schema is read at every workflow parse
# (each SLURM job, each test run), 0.8 s with the pure-Python one.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _key(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        # The offending key is not in the error's path: name it from the instance.
        known = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in known)
        if extra:
            return ".".join(p for p in (path, extra[0]) if p)
    return path or "<top level>"


def validate(config: Mapping[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return `config` merged over the defaults; raise ConfigError naming the bad key."""
    schema = schema or load_schema()
    defaults: dict[str, Any] = {}
    _Validator(schema).validate(defaults)
    merged = deep_merge(defaults, config)
    errors = sorted(_Validator(schema).iter_errors(merged), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        # A schema may say why a rule applies (e.g. a list that must not be empty while
        # the study that reads it is on): its `x-hint`.
        hint = err.schema.get("x-hint") if isinstance(err.schema, dict) else None
        raise ConfigError(
            f"config key '{_key(err)}': {err.message}" + (f" ({hint})" if hint else "")
        )
    return merged


def load_yaml(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def load(path: str | Path) -> dict[str, Any]:
    return validate(load_yaml(path))
