"""Dataclass configs with YAML in and out, dotted overrides, unknown keys and wrong types refused."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import UsageError

T = TypeVar("T")


def to_dict(cfg) -> dict:
    """Plain data (dicts, lists, str, int, float, bool, None): safe for YAML and ``weights_only`` checkpoints."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def from_dict(cls: type[T], data: dict, source: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses.

    Raises UsageError naming the key when a key is unknown or a value has the wrong type.
    """
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise UsageError(
                f"{source}: unknown key {key!r} for {cls.__name__}; known keys: {', '.join(sorted(fields))}"
            )
        kwargs[key] = _coerce(hints[key], value, f"{source}: {key}")
    return cls(**kwargs)


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except UsageError as exc:
                errors.append(str(exc))
        raise UsageError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise UsageError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, where) for a, v in zip(args, value))
        inner = args[0] if args else Any
        items = [_coerce(inner, v, where) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UsageError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def load_yaml(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: config file not found; pass an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    return from_dict(cls, data, str(path))


def save_yaml(cfg, path: str | Path) -> None:
    from .io import atomic_write_bytes

    atomic_write_bytes(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())


def override(cfg: T, updates: dict[str, Any]) -> T:
    """Return a copy of ``cfg`` with dotted-key updates (``{"optim.lr": 1e-3}``); None values are skipped."""
    data = to_dict(cfg)
    for dotted, value in updates.items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise UsageError(f"unknown config key {dotted!r}")
        node[leaf] = _plain(value)
    return from_dict(type(cfg), data)
