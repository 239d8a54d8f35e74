"""A comparable picture of one schema, read from the system catalogs.

``snapshot`` records, for every object in the schema: relations (kind, persistence, oid and
storage file, so a drop-and-recreate or a table rewrite shows), columns (type, nullability,
default, position), constraints with their definitions and validation state, indexes through
``pg_get_indexdef``, enum labels in order, table and column comments, triggers and functions.
Objects named ``powertools_*`` are left out: they are ours (DESIGN §3.2), everything else is
not ours to change.
"""

from __future__ import annotations

from typing import Any

import psycopg

OURS = "powertools\\_%"

RELATIONS = """
SELECT c.relname, c.relkind::text, c.relpersistence::text, c.oid::bigint,
       pg_relation_filenode(c.oid), pg_catalog.obj_description(c.oid, 'pg_class'),
       pg_get_userbyid(c.relowner)::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname NOT LIKE %(ours)s
ORDER BY c.relname
"""

COLUMNS = """
SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text,
       col_description(c.oid, a.attnum)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND c.relname NOT LIKE %(ours)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

CONSTRAINTS = """
SELECT c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid), k.convalidated,
       k.oid::bigint
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = k.connamespace
WHERE n.nspname = %(schema)s AND k.conname NOT LIKE %(ours)s AND c.relname NOT LIKE %(ours)s
ORDER BY c.relname, k.conname
"""

INDEXES = """
SELECT t.relname, i.relname, pg_get_indexdef(i.oid), x.indisvalid, x.indisready
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = i.relnamespace
WHERE n.nspname = %(schema)s AND i.relname NOT LIKE %(ours)s AND t.relname NOT LIKE %(ours)s
ORDER BY t.relname, i.relname
"""

ENUMS = """
SELECT t.typname, e.enumsortorder::float8, e.enumlabel
FROM pg_enum e
JOIN pg_type t ON t.oid = e.enumtypid
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = %(schema)s AND t.typname NOT LIKE %(ours)s
ORDER BY t.typname, e.enumsortorder
"""

TYPES = """
SELECT t.typname, t.typtype::text, t.oid::bigint
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = %(schema)s AND t.typname NOT LIKE %(ours)s AND t.typname NOT LIKE '\\_%%'
  AND t.typtype IN ('e', 'd', 'c') AND NOT EXISTS (
    SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
ORDER BY t.typname
"""

TRIGGERS = """
SELECT c.relname, g.tgname, pg_get_triggerdef(g.oid), g.tgenabled::text
FROM pg_trigger g
JOIN pg_class c ON c.oid = g.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND NOT g.tgisinternal AND g.tgname NOT LIKE %(ours)s
ORDER BY c.relname, g.tgname
"""

FUNCTIONS = """
SELECT p.proname, pg_get_function_identity_arguments(p.oid), md5(p.prosrc)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s AND p.proname NOT LIKE %(ours)s
ORDER BY p.proname, 2
"""

SCHEMA_EXISTS = "SELECT count(*) FROM pg_namespace WHERE nspname = %(schema)s"

SECTIONS = {
    "schema": SCHEMA_EXISTS,
    "relations": RELATIONS,
    "columns": COLUMNS,
    "constraints": CONSTRAINTS,
    "indexes": INDEXES,
    "enums": ENUMS,
    "types": TYPES,
    "triggers": TRIGGERS,
    "functions": FUNCTIONS,
}

# Identities that differ between two schemas built the same way (for ``shape``).
_IDENTITY_COLUMNS = {"relations": (3, 4), "constraints": (5,), "types": (2,)}


def snapshot(
    url: str, schema: str, *, include_ours: bool = False
) -> dict[str, list[tuple[Any, ...]]]:
    """Everything in ``schema`` that is not ours (or everything, with ``include_ours``), exactly:
    oids and storage files included."""
    params = {"schema": schema, "ours": "" if include_ours else OURS}
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            name: [tuple(row) for row in conn.execute(query, params).fetchall()]
            for name, query in SECTIONS.items()
        }


def shape(url: str, schema: str, *, include_ours: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """``snapshot`` without identities (oids, files), enum sort positions (only their order
    matters) or the schema's own name, so two schemas built differently can be compared."""
    snap = snapshot(url, schema, include_ours=include_ours)
    out: dict[str, list[tuple[Any, ...]]] = {}
    for name, rows in snap.items():
        drop = _IDENTITY_COLUMNS.get(name, ())
        cleaned = []
        for row in rows:
            values = [v for i, v in enumerate(row) if i not in drop]
            if name == "enums":
                values = [values[0], values[2]]
            cleaned.append(tuple(_unschema(v, schema) for v in values))
        out[name] = cleaned
    return out


def _unschema(value: Any, schema: str) -> Any:
    if isinstance(value, str):
        return value.replace(f'"{schema}".', "<schema>.").replace(f"{schema}.", "<schema>.")
    return value
