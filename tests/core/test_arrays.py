"""Array literals (``db.arrays``) read back by PostgreSQL exactly as the Python values."""

from __future__ import annotations

import math

import psycopg

from powertools_core.db.arrays import bool_array, float_array, int_array, text_array

AWKWARD = [
    "plain",
    "",
    "NULL",
    "null",
    'a "quoted" word',
    "back\\slash",
    '\\"',
    "{braces},commas, spaces ",
    "tab\tnew\nline",
    "ünïcødé ✓",
    '{"error": "line 1\\nline \\"2\\""}',
    None,
]


def test_text_arrays_round_trip_every_awkward_value(conn: psycopg.Connection) -> None:
    (got,) = conn.execute("SELECT %s::text[]", [text_array(AWKWARD)]).fetchone()
    assert got == AWKWARD
    (got,) = conn.execute("SELECT %s::text[]", [text_array([])]).fetchone()
    assert got == []
    (got,) = conn.execute("SELECT %s::text[]", [text_array([None])]).fetchone()
    assert got == [None]


def test_number_and_boolean_arrays_round_trip(conn: psycopg.Connection) -> None:
    ints = [0, 1, -5, 2**62]
    floats = [0.0, 0.1, 1e-300, 12345.678, None, math.inf, -math.inf]
    row = conn.execute(
        "SELECT %s::bigint[], %s::float8[], %s::boolean[], 'NaN'::float8 = (%s::float8[])[1]",
        [int_array(ints), float_array(floats), bool_array([True, False]), float_array([math.nan])],
    ).fetchone()
    assert row == (ints, floats, [True, False], True)
