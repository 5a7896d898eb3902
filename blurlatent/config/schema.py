"""Configs as plain data and YAML: ``from_dict`` refuses unknown keys, wrong types and values outside the
choices, naming the key; ``load_yaml`` refuses duplicate keys and aliases and checks ranges, naming the file.
A ``TrainConfig`` of an older ``version`` (none: version 1) gets the keys it lacks as that version meant them
(``upgrade``), whether it comes from YAML or from a checkpoint."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from blurlatent.config.options import (
    T,
)
from blurlatent.config.train import CONFIG_VERSION, OLDER_DEFAULTS, ModelConfig, TrainConfig
from blurlatent.errors import UsageError
from blurlatent.files.atomic import atomic_write_bytes, json_safe, refuse_special_file


def to_dict(cfg) -> dict:
    """Plain data (dicts, lists, str, int, float, bool, None): safe for YAML and ``weights_only`` checkpoints."""
    return json_safe(dataclasses.asdict(cfg))


def from_dict(cls: type[T], data: dict, source: str = "config", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses.

    A ``TrainConfig`` is upgraded first (``upgrade``): the keys its version lacks mean what they meant then.
    Raises UsageError naming the key when a key is unknown or a value has the wrong type.
    """
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    if cls is TrainConfig:
        data = upgrade(data, source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise UsageError(
                f"{source}: unknown key {key!r} for {cls.__name__}; known keys: {', '.join(sorted(fields))}"
            )
        kwargs[key] = _coerce(hints[key], value, source, prefix + key)
    return cls(**kwargs)


def upgrade(data: dict, source: str = "config") -> dict:
    """A ``TrainConfig`` as plain data (a YAML file's, a checkpoint's ``config``) made the current version: a key
    it lacks whose default changed after its ``version`` (none: 1) gets the default of its day (``OLDER_DEFAULTS``),
    and ``version`` becomes ``CONFIG_VERSION``. ``data`` itself is not changed; values are not checked here
    (``from_dict`` does). Raises UsageError for a version this blurlatent does not know."""
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= CONFIG_VERSION:
        raise UsageError(f"{source}: version {version!r}: this blurlatent reads config versions 1 to {CONFIG_VERSION}; "
                         "give one of them (a newer one needs a newer blurlatent)")
    data = copy.deepcopy(data)
    for later in range(version + 1, CONFIG_VERSION + 1):
        for dotted, value in OLDER_DEFAULTS.get(later, {}).items():
            node, (*parents, leaf) = data, dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):  # a damaged file: from_dict names the key
                    break
            else:
                node.setdefault(leaf, copy.deepcopy(value))
    data["version"] = CONFIG_VERSION
    return data


def model_config(config: dict, source: str = "config.model", prefix: str = "") -> ModelConfig:
    """The ``ModelConfig`` of a ``TrainConfig`` as plain data (a checkpoint's ``config``), the keys its version
    lacks filled in (``upgrade``: a checkpoint without ``version`` holds the paper's model unless it says
    otherwise). Raises UsageError naming ``source`` and the key (``prefix`` + its name)."""
    return from_dict(ModelConfig, upgrade(config, source)["model"], source, prefix)


def _coerce(hint, value, source: str, key: str):
    where = f"{source}: {key}" if source else key
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value, source, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source, key)
            except UsageError as exc:
                errors.append(str(exc))
        raise UsageError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise UsageError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, source, key) for a, v in zip(args, value, strict=True))
        inner = args[0] if args else Any
        items = [_coerce(inner, v, source, key) for v in value]
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
    if typing.get_origin(hint) is Literal:
        if value not in typing.get_args(hint):
            raise UsageError(f"{where} {value}: use one of {', '.join(map(str, typing.get_args(hint)))}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UsageError(f"{where}: expected a string, got {value!r}")
        return value
    return value


class YamlRefused(yaml.YAMLError):
    """Valid YAML that blurlatent refuses: a duplicate key or an alias."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (PyYAML keeps the last one and silently drops a whole
    block) and aliases (``*name``: a few lines of nested aliases expand to billions of values)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlRefused(f"line {event.start_mark.line + 1}: YAML alias *{event.anchor} refused "
                              "(aliases can expand without bound); write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue  # SafeLoader refuses it with its own message
            if key in seen:
                raise YamlRefused(f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                                  "(the earlier one would be dropped); keep one")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path):
    """The plain data in YAML file ``path`` (StrictLoader). Raises UsageError naming the file."""
    path = Path(path)
    refuse_special_file(path, "pass a YAML config file")  # a FIFO would block the read forever
    if not path.is_file():
        raise UsageError(f"{path}: config file not found; pass an existing YAML file")
    try:
        return yaml.load(path.read_text(), Loader=StrictLoader)
    except YamlRefused as exc:
        raise UsageError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{path}: not valid YAML ({first}); fix the syntax") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: not a YAML text file ({type(exc).__name__}); pass a YAML config") from None


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Config ``cls`` from YAML file ``path``: keys, types, choices and ranges checked (``check_ranges``, else
    ``check``), errors naming the file."""
    return checked_config(cls, read_yaml(path) or {}, path)


def checked_config(cls: type[T], data, path: str | Path) -> T:
    """Config ``cls`` from the plain data ``read_yaml(path)`` returned, checked as ``load_yaml`` checks it (for a
    caller that also needs the data itself)."""
    cfg = from_dict(cls, data, str(path))
    check = getattr(cfg, "check_ranges", None) or getattr(cfg, "check", None)
    if check is not None:
        try:
            check()
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from None
    return cfg


def save_yaml(cfg, path: str | Path) -> None:
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
        # a float stays itself: json_safe would make --lr inf a None ("expected a number, got None")
        node[leaf] = value if isinstance(value, float) else json_safe(value)
    return from_dict(type(cfg), data, source="")
