"""Small helpers shared by migration files (target schema, quoting, common columns)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlalchemy.sql.elements import quoted_name

from powertools_core.db.identifiers import qualify


def schema() -> quoted_name:
    """The target schema, always quoted in emitted DDL."""
    return quoted_name(context.config.attributes["schema"], quote=True)


def q(template: str) -> str:
    """A raw SQL template with ``{prefix}`` replaced by the quoted target schema."""
    return qualify(template, context.config.attributes["schema"])


def utc_now() -> sa.TextClause:
    return sa.text("timezone('UTC', now())")


def ts(name: str, *, nullable: bool = True, default_now: bool = False) -> sa.Column[object]:
    """A ``timestamp without time zone`` column holding UTC, as Oban does."""
    return sa.Column(
        name,
        sa.DateTime(timezone=False),
        nullable=nullable,
        server_default=utc_now() if default_now else None,
    )


def jsonb(name: str, *, nullable: bool = False, default: str = "{}") -> sa.Column[object]:
    from sqlalchemy.dialects.postgresql import JSONB

    return sa.Column(
        name, JSONB(), nullable=nullable, server_default=sa.text(f"'{default}'::jsonb")
    )
