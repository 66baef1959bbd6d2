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
from dataclasses import MISSING, Field, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

import cbor2

from gridledger.ledger import codec
from gridledger.memo import Memo

if TYPE_CHECKING:
    from gridledger.ledger.state import State

_OMIT = "omit_if_none"


def optional() -> Any:
    """A record field that defaults to ``None`` and is absent from the encoding while None."""
    return field(default=None, metadata={_OMIT: True})


_SCALARS = frozenset({int, str, bytes, bool, type(None)})
"""Types ``_plain`` returns unchanged, tested by exact type before calling it."""


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [x if type(x) in _SCALARS else _plain(x) for x in v]
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
_Decoding = tuple[frozenset[str], "dict[str, tuple[str, type[Record]]]", dict[str, Any],
                  tuple[tuple[str, Any], ...], frozenset[str]]
"""(field names, nested-record fields, defaults, default factories, required names)."""


class Record:
    """Mixin for ``@dataclass(frozen=True)`` state records (and message bodies).

    ``to_obj`` / ``from_obj`` give the CBOR map; ``encode`` / ``decode`` the bytes. Decoding
    refuses keys the record does not know (state is written only by its keeper, so an
    unknown key is a defect, reported as such). Nested records override ``from_obj``.
    """

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    _layout: ClassVar[_Layout | None] = None
    _plan: ClassVar[_Decoding | None] = None

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
        # fields read from the instance's dict and scalars taken as they are, without a
        # ``_plain`` call each: ~half of ``to_obj``'s cost (every state write encodes one)
        out: dict[str, Any] = {}
        values = self.__dict__
        for name, omit, _ in self._fields():
            v = values[name]
            if v is None:
                if not omit:
                    out[name] = None
            elif type(v) in _SCALARS:
                out[name] = v
            else:
                out[name] = _plain(v)
        return out

    @classmethod
    def _decoding(cls) -> _Decoding:
        plan: _Decoding | None = cls.__dict__.get("_plan")
        if plan is None:
            layout = cls._fields()
            own = {f.name: f for f in fields(cls)}
            defaults = {name: f.default for name, f in own.items()
                        if f.default is not MISSING}
            factories = tuple((name, f.default_factory) for name, f in own.items()
                              if f.default_factory is not MISSING)
            required = frozenset(name for name, f in own.items()
                                 if f.default is MISSING and f.default_factory is MISSING)
            plan = (frozenset(own), {name: n for name, _, n in layout if n is not None},
                    defaults, factories, required)
            cls._plan = plan
        return plan

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> Self:
        """The record whose ``to_obj()`` is ``obj``; ``ValueError`` for a key the record
        does not know, ``TypeError`` (as the dataclass's constructor) for a missing one.

        Records are frozen dataclasses without ``__post_init__``: the instance's fields
        are filled in directly (defaults, then ``obj``'s), which is what the generated
        ``__init__`` does one ``object.__setattr__`` at a time — decoding state records
        was ~8 % of a replayed block's CPU (issue 17)."""
        names, nested, defaults, factories, required = cls._decoding()
        if not names.issuperset(obj):
            raise ValueError(f"{cls.__name__} has no field(s) {sorted(set(obj) - names)}")
        if not required.issubset(obj):
            return cls(**obj)   # raises the constructor's TypeError naming what is missing
        kw = {name: (tuple(_frozen(x) for x in v) if type(v) is list else v)
              for name, v in obj.items()}
        for name, (how, rec) in nested.items():
            v = obj.get(name)
            if v is not None:
                kw[name] = (rec.from_obj(v) if how == "one"
                            else tuple(rec.from_obj(x) for x in v))
        out = object.__new__(cls)
        state = out.__dict__
        state.update(defaults)
        for name, factory in factories:
            if name not in kw:
                state[name] = factory()
        state.update(kw)
        return out

    def encode(self) -> bytes:
        return codec.encode(self.to_obj())

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        return cls.from_obj(codec.decode(raw))

    @classmethod
    def from_stored(cls, raw: bytes) -> Self:
        """The record a keeper stored as ``raw`` (a state value: written canonical by the
        keeper, so no re-encoding check), decoded once per distinct bytes while they stay
        in the memo (``STORED_MAX``).

        A pure function of the bytes: records are frozen and hold only immutable values
        (tuples, never lists or dicts: ``from_obj``), so every reader may share one
        object, and a rolled-back write changes nothing (its bytes were decoded as what
        they are). The hooks and invariants of every block read the same open orders,
        pending readings and wash-window flows again: decoding them was the largest
        part of ``from_obj``'s ~1/8 of a replayed block's CPU (issue 17)."""
        key = (cls, raw)
        rec = _STORED.get(key)
        if rec is None:
            rec = cls.from_obj(cbor2.loads(raw))
            _STORED.put(key, rec)
        return rec  # type: ignore[return-value]


STORED_MAX = 8192
"""Records ``from_stored`` keeps decoded (~1 KB each with their bytes: at most ~8 MiB)."""
_STORED: Memo[tuple[type[Record], bytes], Record] = Memo(STORED_MAX)
"""Aged by block time (``gridledger.memo``): what the last hour or two of blocks read."""

R = TypeVar("R", bound=Record)


def read(state: State, key: bytes, cls: type[R]) -> R | None:
    """The ``cls`` record stored under ``key`` (None: absent), via ``from_stored``."""
    raw = state.get(key)
    return None if raw is None else cls.from_stored(raw)


def read_prefix(state: State, prefix: bytes, cls: type[R]) -> list[tuple[bytes, R]]:
    """``(key after prefix, record)`` of every ``cls`` record under ``prefix``, in key
    order, via ``from_stored``."""
    n, get, dec = len(prefix), state.get, cls.from_stored
    return [(k[n:], dec(get(k))) for k in state.keys_with_prefix(prefix)]  # type: ignore[arg-type]
