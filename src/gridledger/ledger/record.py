"""State records: frozen dataclasses stored as canonical CBOR maps keyed by field name.

A record encodes to exactly the map the module wrote before it had types (one key per
field, tuples as lists), so converting a module to typed records does not move a single
state root. A field declared with ``optional()`` is left out of the map while it is
``None``: records that never had the key keep their bytes. A field typed as another
record (``Evidence``, ``Evidence | None``, ``tuple[Leaf, ...]``) is encoded as its map and
decoded back into the record.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import Field, field, fields
from typing import Any, ClassVar, Self

from gridledger.ledger import codec

_OMIT = "omit_if_none"


def optional() -> Any:
    """A record field that defaults to ``None`` and is absent from the encoding while None."""
    return field(default=None, metadata={_OMIT: True})


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, Record):
        return v.to_obj()
    return v


def _frozen(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_frozen(x) for x in v)
    return v


def _nested(hint: Any) -> tuple[str, type[Record]] | None:
    """("one", R) for a field typed R or R | None, ("many", R) for tuple[R, ...]."""
    args = typing.get_args(hint)
    if isinstance(hint, type) and issubclass(hint, Record):
        return "one", hint
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _nested(inner[0])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        one = _nested(args[0])
        if one is not None and one[0] == "one":
            return "many", one[1]
    return None


_Layout = tuple[tuple[str, bool, "tuple[str, type[Record]] | None"], ...]


class Record:
    """Mixin for ``@dataclass(frozen=True)`` state records (and message bodies).

    ``to_obj`` / ``from_obj`` give the CBOR map; ``encode`` / ``decode`` the bytes. Decoding
    refuses keys the record does not know (state is written only by its keeper, so an
    unknown key is a defect, reported as such). Nested records override ``from_obj``.
    """

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    _layout: ClassVar[_Layout | None] = None

    @classmethod
    def _fields(cls) -> _Layout:
        layout: _Layout | None = cls.__dict__.get("_layout")
        if layout is None:
            hints = typing.get_type_hints(cls)
            layout = tuple((f.name, bool(f.metadata.get(_OMIT)), _nested(hints[f.name]))
                           for f in fields(cls))
            cls._layout = layout
        return layout

    def to_obj(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, omit, _ in self._fields():
            v = getattr(self, name)
            if v is None and omit:
                continue
            out[name] = _plain(v)
        return out

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> Self:
        layout = cls._fields()
        unknown = set(obj) - {name for name, _, _ in layout}
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        kw: dict[str, Any] = {}
        for name, _, nested in layout:
            if name not in obj:
                continue
            v = obj[name]
            if nested is None or v is None:
                kw[name] = _frozen(v)
            elif nested[0] == "one":
                kw[name] = nested[1].from_obj(v)
            else:
                kw[name] = tuple(nested[1].from_obj(x) for x in v)
        return cls(**kw)

    def encode(self) -> bytes:
        return codec.encode(self.to_obj())

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        return cls.from_obj(codec.decode(raw))
