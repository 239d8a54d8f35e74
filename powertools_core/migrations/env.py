"""Alembic environment driven from code (see powertools_core.migrate).

The caller passes the target schema and either an open connection (online; the caller holds the
transaction and the install advisory lock) or nothing (offline: ``install --dry-run`` prints SQL).
"""

from __future__ import annotations

from alembic import context

from powertools_core.schema.powertools import VERSION_TABLE

config = context.config
schema: str = config.attributes["schema"]


def run_offline() -> None:
    context.configure(
        url="postgresql+psycopg://",
        dialect_name="postgresql",
        literal_binds=True,
        version_table=VERSION_TABLE,
        version_table_schema=schema,
        # migrate.install(dry_run=True) wraps the whole script (Oban core + these migrations) in
        # one transaction under the install advisory lock, as the online install does.
        transactional_ddl=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        version_table_schema=schema,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
