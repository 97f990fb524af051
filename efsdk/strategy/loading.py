"""Load a strategy class from a Python file and its config from TOML or YAML."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import pydantic

from efsdk.errors import ConfigError
from efsdk.strategy.base import Strategy, StrategyConfig

__all__ = ["load_config", "load_strategy_class", "make_strategy"]


def load_strategy_class(path: str | os.PathLike[str], name: str | None = None) -> type[Strategy]:
    """The :class:`Strategy` subclass defined in ``path`` (``name`` picks one when it defines several)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"strategy file {file} does not exist")
    module_name = f"efsdk_user_strategy_{file.stem}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{file} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pydantic look their module up
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"importing {file} failed: {type(exc).__name__}: {exc}") from exc
    found = {
        obj.__name__: obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Strategy) and obj is not Strategy and obj.__module__ == module_name
    }
    if name is not None:
        if name not in found:
            raise ConfigError(f"{file} defines no Strategy subclass {name!r}; it has: {', '.join(found) or 'none'}")
        return found[name]
    if len(found) != 1:
        raise ConfigError(
            f"{file} defines {len(found)} Strategy subclasses ({', '.join(found) or 'none'}); pick one with --class"
        )
    return next(iter(found.values()))


def _read(path: Path) -> dict[str, Any]:
    text = path.read_bytes()
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text.decode("utf-8"))
        elif suffix in (".yaml", ".yml"):
            import yaml  # noqa: PLC0415 - only for YAML configs

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: config must be .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except ImportError as exc:
        raise ConfigError("YAML configs need PyYAML (pip install pyyaml)") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        raise
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table/mapping of settings")
    return data


def load_config(
    config_class: type[StrategyConfig], path: str | os.PathLike[str] | None = None, **overrides: Any
) -> StrategyConfig:
    """Validate ``path`` (TOML/YAML; optional) plus ``overrides`` into ``config_class``.

    Unknown keys and bad values raise :class:`~efsdk.errors.ConfigError`
    naming each field.
    """
    data = _read(Path(path)) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return config_class.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        where = f" in {path}" if path is not None else ""
        raise ConfigError(f"invalid {config_class.__name__}{where}: {problems}") from None


def make_strategy(
    path: str | os.PathLike[str], config: str | os.PathLike[str] | None = None, name: str | None = None, **overrides: Any
) -> Strategy:
    """Load the strategy class in ``path`` and build it from ``config`` plus ``overrides``."""
    cls = load_strategy_class(path, name)
    return cls(load_config(cls.config_class, config, **overrides))
