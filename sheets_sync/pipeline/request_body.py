"""The one write's body as bytes, and the JSON text of its big row lists (pure: standard
library only).

gspread would hand the body to requests as ``json=``, which encodes it with
``json.dumps(body, allow_nan=False)`` and UTF-8. Those bytes are what is sent, and the
golden bodies under ``tests/fixtures/golden`` pin them. Two things make producing them
cheaper without changing one byte:

* The default ``check_circular`` spends a fifth of the encoding on remembering every
  dict to detect reference cycles, which a body built by the renderer never has.
* A refresh's body is up to several megabytes, nearly all of it the cells of one or two
  ``updateCells`` row lists. Building each cell as a dict only for ``json.dumps`` to
  take it apart again cost more than the rest of the refresh together. The renderers
  write those rows as JSON text directly (:class:`EncodedRows`, with the same encoders
  ``json`` uses for each string and number), and :func:`batch_update_body` splices the
  text in where the rows go.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from json.encoder import encode_basestring_ascii
from typing import Any, overload

# What json writes for an int and a finite float. The renderers' hottest loops call these
# directly for those two types (a function call per number costs more than the text) and
# ``json_number`` for anything else.
int_text = int.__repr__
float_text = float.__repr__


def json_string(value: str) -> str:
    """``value`` as ``json.dumps`` writes a string (ASCII, escaped)."""
    return encode_basestring_ascii(value)


def json_number(value: Any) -> str:
    """A number as ``json.dumps(value, allow_nan=False)`` writes it.

    Raises ``ValueError`` for NaN or infinity, as the body's encoding would.
    """
    kind = value.__class__
    if kind is int:
        return int_text(value)
    if kind is float:
        if not math.isfinite(value):
            raise ValueError("Out of range float values are not JSON compliant")
        return float_text(value)
    # bool, int subclasses, anything odd: exactly what json does with it (or its error).
    return json.dumps(value, allow_nan=False)


def json_value(value: Any) -> str:
    """Any JSON value (a format, a note a teammate typed) as the body writes it."""
    return json.dumps(value, allow_nan=False, check_circular=False)


class EncodedRows(Sequence[Mapping[str, Any]]):
    """An ``updateCells`` request's ``rows``, held as the JSON text of each row.

    To the body it is that text; to anything that reads the request (tests, mostly) it
    is the list of row dicts the text encodes, decoded on first look.
    """

    def __init__(self, row_texts: list[str]) -> None:
        self._texts = row_texts

    @property
    def text(self) -> str:
        return "[" + ", ".join(self._texts) + "]"

    @cached_property
    def _decoded(self) -> list[Mapping[str, Any]]:
        rows: list[Mapping[str, Any]] = json.loads(self.text)
        return rows

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Mapping[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self._decoded[index]

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self._decoded)

    def __repr__(self) -> str:
        return f"EncodedRows({len(self)} rows)"


def batch_update_body(requests_: Sequence[Mapping[str, Any]]) -> bytes:
    """``{"requests": requests_}`` exactly as requests would encode it for ``json=``.

    Raises ``ValueError`` for NaN or infinity, as requests refuses them too.
    """
    spliced: list[str] = []
    # A marker json writes as text no string of a request can encode to: the NUL becomes
    # "\u0000", which only a NUL followed by this run's random tag would also give.
    marker = f"\0rows:{secrets.token_hex(8)}"

    def encoded_rows(value: object) -> str:
        if isinstance(value, EncodedRows):
            spliced.append(value.text)
            return marker
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    text = json.dumps(
        {"requests": requests_}, allow_nan=False, check_circular=False, default=encoded_rows
    )
    if spliced:
        pieces = text.split(json_string(marker))
        if len(pieces) != len(spliced) + 1:
            raise ValueError("a request's text collides with the row marker")
        text = "".join(
            piece + rows for piece, rows in zip(pieces, [*spliced, ""], strict=True)
        )
    return text.encode("utf-8")
