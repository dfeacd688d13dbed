"""JSON through the C accelerator, without importing :mod:`json`.

Every ocirt command is a new process that reads config.json or state.json, and
``import json`` costs about 9 ms here, nearly all of it ``re`` and ``enum``,
which json needs only for its pure-Python fallbacks. The scanner and encoder
below are the same C code (``_json``) that :mod:`json` uses; output is compact,
or indented as ``json.dumps(value, indent=2)`` writes it (``ocirt state``).
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Decoding:
    """The attributes ``_json.make_scanner`` reads from a decoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Decoding())  # type: ignore[arg-type]


def _unserializable(obj: object) -> object:
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


_encode = _json.make_encoder(
    None, _unserializable, _json.encode_basestring_ascii, None, ":", ",", False, False, True
)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i


def _where(text: str, i: int) -> str:
    line = text.count("\n", 0, i) + 1
    return f"line {line} column {i - text.rfind(chr(10), 0, i)} (char {i})"


def loads(data: str | bytes) -> Any:
    """Parse one JSON document; ValueError names the line and column at fault."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    start = _skip(text, 0)
    try:
        value, end = _scan(text, start)
    except StopIteration as e:
        raise ValueError(f"expecting a value: {_where(text, e.value)}") from None
    except SystemError:
        # Other syntax errors (a missing ':' or ',', an unclosed object) _json raises
        # as json.decoder.JSONDecodeError, a ValueError, looked up in sys.modules
        # only: without json imported it fails instead. Import it on this path alone
        # and scan again for the real error.
        import json.decoder  # noqa: F401

        _scan(text, start)
        raise
    end = _skip(text, end)
    if end != len(text):
        raise ValueError(f"extra data: {_where(text, end)}")
    return value


def dumps(value: Any) -> str:
    """Compact JSON (ASCII, no spaces)."""
    return "".join(_encode(value, 0))


def dumps_indented(value: Any, indent: str = "  ", level: int = 0) -> str:
    """JSON as ``json.dumps(value, indent=2)`` writes it: for people and engines alike."""
    inner = indent * (level + 1)
    if isinstance(value, dict) and value:
        items = (f"{inner}{dumps(str(k))}: {dumps_indented(v, indent, level + 1)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + "\n" + indent * level + "}"
    if isinstance(value, (list, tuple)) and value:
        items = (inner + dumps_indented(v, indent, level + 1) for v in value)
        return "[\n" + ",\n".join(items) + "\n" + indent * level + "]"
    return dumps(value)
