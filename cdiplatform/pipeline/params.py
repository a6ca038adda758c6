"""A stage's parameters from a job's ``[stage.params]`` table, every key and type checked.

A stage's ``Params`` dataclass holds its execution settings (``chunk``,
``device``, ``batch_size``...) and, in one field declared with
:func:`~cdiplatform.pipeline.stage.config_field`, the science configuration
itself (:class:`~cdiplatform.phasing.PhasingSettings`,
:class:`~cdiplatform.simulate.objects2d.Convex2DRecipe`...), so that each
setting has one definition. In the table, the configuration's fields sit flat
beside the execution settings::

    [stage.params]
    recipe = "cohere_scan54"        # a named configuration of the stage
    n_starts = 2                    # a field of the configuration
    shrink_wrap = { sigma = 0.8 }   # a nested one (false: none)
    chunk = 1                       # an execution setting

Every problem is one :class:`~cdiplatform.errors.JobError` naming the key.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from cdiplatform.errors import JobError

__all__ = ["build_params", "config_field_of", "params_to_dict"]


def config_field_of(params_cls: type) -> dataclasses.Field | None:
    """The field of a ``Params`` dataclass that holds the science configuration, if any."""
    for f in dataclasses.fields(params_cls):
        if f.metadata.get("config"):
            return f
    return None


def _dataclass_in(annotation: Any) -> type | None:
    """The dataclass of ``X`` or ``X | None``, else None."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for a in typing.get_args(annotation):
            if dataclasses.is_dataclass(a):
                return a
    return None


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
        inner = args[0] if args else Any
        return all(_type_ok(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is None and hasattr(annotation, "__name__"):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _convert(value: Any, annotation: Any) -> Any:
    """TOML lists become tuples where the annotation says tuple."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(annotation):
            if a is not type(None) and _type_ok(value, a):
                return _convert(value, a)
        return value
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def _build_dataclass(cls: type, table: dict[str, Any], *, where: str, base: Any = None) -> Any:
    """``cls`` from a table (over ``base`` when given), nested dataclasses from sub-tables."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise JobError(f"{where}: unknown parameter {unknown[0]!r}; takes {', '.join(sorted(fields))}")
    values: dict[str, Any] = {}
    for name, value in table.items():
        hint = hints[name]
        nested = _dataclass_in(hint)
        if nested is not None and isinstance(value, dict):
            current = getattr(base, name, None) if base is not None else None
            values[name] = _build_dataclass(nested, value, where=f"{where}.{name}",
                                            base=current if dataclasses.is_dataclass(current) else None)
            continue
        if nested is not None and value is False and _optional(hint):
            values[name] = None
            continue
        if not _type_ok(value, hint):
            got = type(value).__name__
            what = _type_name(hint) + (" (a table of its fields, or false)" if nested is not None else "")
            raise JobError(f"{where}.{name}: expected {what}, got {got} {value!r}")
        values[name] = _convert(value, hint)
    if base is None:
        missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise JobError(f"{where}: missing parameter {missing[0]!r} ({_type_name(hints[missing[0]])})")
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except (TypeError, ValueError) as exc:
        raise JobError(f"{where}: {exc}") from None


def build_params(stage: type, table: dict[str, Any], *, where: str) -> Any:
    """The stage's ``Params`` from a TOML table.

    Keys of ``Params`` set its fields; the other keys, and ``recipe``, set
    the science configuration (see the module docstring).
    """
    params_cls = stage.Params
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    config = config_field_of(params_cls)
    own = {k: v for k, v in table.items() if k in fields and (config is None or k != config.name)}
    rest = {k: v for k, v in table.items() if k not in own}
    values: dict[str, Any] = {}
    if config is not None:
        config_cls = _dataclass_in(typing.get_type_hints(params_cls)[config.name])
        recipes = config.metadata.get("recipes", {})
        if config.name in rest and isinstance(rest[config.name], dict):  # a nested table is allowed too
            rest = {**rest.pop(config.name), **rest}
        base = config.default if config.default is not dataclasses.MISSING else config.default_factory()
        if "recipe" in rest:
            name = rest.pop("recipe")
            if name not in recipes:
                known = ", ".join(sorted(recipes)) or "none"
                raise JobError(f"{where}.recipe: unknown recipe {name!r} of {stage.name}; known: {known}")
            base = recipes[name]
        values[config.name] = _build_dataclass(config_cls, rest, where=where, base=base) if rest else base
        rest = {}
    if rest:
        unknown = sorted(rest)[0]
        raise JobError(f"{where}: unknown parameter {unknown!r}; {stage.name} takes {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(params_cls)
    for name, f in fields.items():
        if config is not None and name == config.name:
            continue
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in own and no_default:
            raise JobError(f"{where}: missing parameter {name!r} ({_type_name(hints[name])})")
        if name in own:
            if not _type_ok(own[name], hints[name]):
                got = type(own[name]).__name__
                raise JobError(f"{where}.{name}: expected {_type_name(hints[name])}, got {got} {own[name]!r}")
            values[name] = _convert(own[name], hints[name])
    try:
        return params_cls(**values)
    except (TypeError, ValueError) as exc:
        raise JobError(f"{where}: {exc}") from None


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "text") and hasattr(value, "steps"):  # a parsed algorithm string
            return str(value)
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value


def params_to_dict(params: Any) -> dict[str, Any]:
    """Parameters as plain JSON-able values (tuples become lists, nested configurations tables)."""
    return _plain(params)
