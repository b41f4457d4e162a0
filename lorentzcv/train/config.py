"""Typed run configuration: the schema's dataclasses (:mod:`lorentzcv.train.schema`) loaded from YAML, with
``--set a.b=value`` overrides, and written back (``config.yaml``, checkpoints).

>>> cfg = load_config("configs/classification/table2/cifar100_hecnn_resnet18.yaml", ["train.epochs=2"])
>>> cfg.optim.lr, cfg.train.epochs
(0.1, 2)

A top-level ``task: metric`` gives a :class:`MetricRunConfig`, anything else a classification :class:`Config`.
Validation is strict: an unknown key is a :class:`ConfigError` naming the valid keys of its section (with a
close-match suggestion), a value of the wrong type is a :class:`ConfigError` naming the expected type, a
non-finite number (``nan``, ``inf``) is refused wherever a number is expected, and then the schema's own checks
run (``validate()``). ``--set`` values are parsed as YAML scalars (``true``, ``1e-4``, ``[60, 120]``, ``null``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from . import schema
from .schema import TASKS, AnyConfig, Config, ConfigError, MetricRunConfig

__all__ = [*schema.__all__, "load_config", "config_from_dict", "config_to_dict", "apply_overrides",
           "parse_override", "save_config", "valid_keys"]


def __getattr__(name: str) -> Any:
    """The schema's classes, also importable from here (``from lorentzcv.train.config import ModelConfig``)."""
    if name in schema.__all__:
        return getattr(schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _NonFiniteError(ConfigError):
    """A number that is ``nan`` or ``inf`` (the right type, so a ``X | None`` union must not swallow it)."""



# -------------------------------------------------------------------------------------------- dict <-> dataclass


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple, Sequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (dict, Mapping):
        return "mapping"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _fail(path: str, tp: Any, value: Any) -> ConfigError:
    key = path.split("[", 1)[0]
    return ConfigError(
        f"config key '{path}' expects {_type_name(tp)}, got {value!r} ({type(value).__name__}); "
        f"fix it in the YAML file or with --set {key}=..."
    )


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (converting int->float, numeric strings->float)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"config section '{path}' must be a mapping of keys to values, got {value!r}; "
                f"valid keys: {', '.join(valid_keys(tp))}"
            )
        return _build(tp, value, path)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _fail(path, tp, value)
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, path)
            except _NonFiniteError:
                raise
            except ConfigError:
                continue
        raise _fail(path, tp, value)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"config key '{path}' must be one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}"
        )
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise _fail(path, tp, value)
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item_tp = args[0] if args else Any
        return [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _fail(path, tp, value)
        return {str(k): v for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _fail(path, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _fail(path, tp, value)
    if tp is float:
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise _fail(path, tp, value)
        if not math.isfinite(number):
            key = path.split("[", 1)[0]
            raise _NonFiniteError(f"config key '{path}' must be a finite number, got {value!r}; fix it in the YAML "
                              f"file or with --set {key}=...")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _fail(path, tp, value)
    raise ConfigError(f"config key '{path}': unsupported annotation {tp!r}")  # programming error


def valid_keys(cls: type) -> list[str]:
    """The field names of a config dataclass, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]


def _build(cls: type, data: Mapping[str, Any], prefix: str = "", base: Any = None) -> Any:
    """``cls`` from ``data``; keys not in ``data`` keep the values of ``base`` (default ``cls()``).

    A nested section given in part starts from the *parent's* default for that section (its
    ``default_factory``), so e.g. a metric run's ``optim`` section keeps the metric defaults for the keys it
    does not set, rather than those of a bare ``OptimConfig()``.
    """
    hints = typing.get_type_hints(cls)
    names = valid_keys(cls)
    if base is None:
        base = cls()
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"did you mean '{prefix + '.' if prefix else ''}{close[0]}'? " if close else ""
            where = f"section '{prefix}'" if prefix else "the top level"
            raise ConfigError(f"unknown config key '{path}'; {hint}valid keys in {where}: {', '.join(names)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            kwargs[key] = _build(tp, value, path, base=getattr(base, key))
        else:
            kwargs[key] = _coerce(value, tp, path)
    return dataclasses.replace(base, **kwargs)


def config_from_dict(data: Mapping[str, Any] | None) -> AnyConfig:
    """Build and validate a config from a nested mapping (missing keys keep their defaults).

    A top-level ``task: metric`` gives a :class:`MetricRunConfig`; no ``task`` (or ``task: classification``)
    a classification :class:`Config`.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of sections ({', '.join(valid_keys(Config))}), got {data!r}")
    task = data.get("task", "classification")
    if task not in TASKS:
        raise ConfigError(f"config key 'task' must be one of {', '.join(repr(t) for t in TASKS)}, got {task!r}")
    if task == "metric":
        return _build(MetricRunConfig, data).validate()
    return _build(Config, {k: v for k, v in data.items() if k != "task"}).validate()


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts/lists/scalars (what ``config.yaml`` and checkpoints store)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj



# ----------------------------------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``"a.b=value"`` into ``(["a", "b"], value)``; the value is read as a YAML scalar/flow value."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key (e.g. --set optim.lr=0.05), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse {raw!r} as a YAML value ({exc.__class__.__name__})") from None
    return key.split("."), value


def apply_overrides(data: Mapping[str, Any] | None, overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of the nested mapping ``data`` with every ``a.b=value`` override set."""
    out = _plain(dict(data or {}))
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for i, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: '{'.'.join(keys[: i + 1])}' is a value, not a section")
            node = child
        node[keys[-1]] = value
    return out


def _read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"config file '{p}' not found; pass a YAML file (see configs/ in the repository) or no CONFIG "
            "for the built-in digits demo"
        )
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"config file '{p}' is not valid YAML{where}; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping with sections {', '.join(valid_keys(Config))}")
    return data


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> AnyConfig:
    """Load a YAML config (or the demo defaults when ``path`` is ``None``) and apply ``--set`` overrides.

    Returns a :class:`MetricRunConfig` when the file says ``task: metric``, else a :class:`Config`.

    Raises:
        ConfigError: missing/invalid file, unknown key, wrong type or inconsistent values.
    """
    data = _read_yaml(path) if path is not None else {}
    return config_from_dict(apply_overrides(data, overrides))


def save_config(cfg: AnyConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically and durably: temporary file, ``fsync``, rename)."""
    import os

    from .checkpoint import replace_durably

    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None))
    replace_durably(tmp, p)
