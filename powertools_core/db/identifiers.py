"""The one place identifiers enter SQL.

A prefix (schema name) is validated before any SQL runs, and every identifier is quoted when it
is put into a statement, so ``--prefix 'x;drop table y'`` can neither execute nor be mistaken for
another schema.
"""

from __future__ import annotations

import re

from powertools_core.errors import InvalidInput

_PREFIX_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")

PREFIX_RULE = (
    "use 1-63 lowercase letters, digits or underscores, starting with a letter or underscore, "
    "e.g. --prefix app_jobs"
)


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a plain PostgreSQL identifier we accept, else raise."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise InvalidInput(f"invalid prefix {prefix!r}", hint=PREFIX_RULE)
    if prefix.startswith("pg_"):
        raise InvalidInput(
            f"invalid prefix {prefix!r}: names starting with pg_ are reserved by PostgreSQL",
            hint=PREFIX_RULE,
        )
    return prefix


def quote_ident(name: str) -> str:
    """Quote an identifier the way PostgreSQL does (always, even when it would not need it)."""
    if "\x00" in name:
        raise InvalidInput("identifiers cannot contain NUL bytes")
    return '"' + name.replace('"', '""') + '"'


def qualify(template: str, prefix: str) -> str:
    """Put the quoted schema into a SQL template in place of every ``{prefix}`` token.

    Templates are constants in the code; only the validated, quoted prefix is substituted, never
    user values (those are always bound parameters).
    """
    return template.replace("{prefix}", quote_ident(validate_prefix(prefix)))
