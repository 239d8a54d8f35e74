"""PostgreSQL array literals for hot-path parameters (``{1,2,NULL}``), sent as text.

psycopg adapts a Python list element by element (a dumper lookup per value); for the acker's
arrays, hundreds of elements per flush on the event loop's thread, building the literal is
several times cheaper. The statement casts the parameter (``%(ids)s::bigint[]``), so the text
is parsed by PostgreSQL's array input. Strings are always quoted and escaped, so no value
(``NULL``, a comma, a brace, a quote) is special; ``None`` is the unquoted ``NULL``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def int_array(values: Iterable[int]) -> str:
    """``{1,2,3}``."""
    return "{" + ",".join([str(int(v)) for v in values]) + "}"


def bool_array(values: Iterable[bool]) -> str:
    """``{t,f}``."""
    return "{" + ",".join(["t" if v else "f" for v in values]) + "}"


def float_array(values: Iterable[float | None]) -> str:
    """``{0.5,NULL}`` (``Infinity``/``NaN`` spelled as PostgreSQL reads them)."""
    return "{" + ",".join([_float(v) for v in values]) + "}"


def text_array(values: Iterable[str | None]) -> str:
    """``{"a","b\\"c",NULL}``: every string quoted, backslashes and quotes escaped."""
    return "{" + ",".join([_text(v) for v in values]) + "}"


def _float(v: float | None) -> str:
    if v is None:
        return "NULL"
    f = float(v)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "Infinity" if f > 0 else "-Infinity"
    return repr(f)


def _text(v: str | None) -> str:
    if v is None:
        return "NULL"
    if "\\" in v or '"' in v:
        v = v.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + v + '"'
