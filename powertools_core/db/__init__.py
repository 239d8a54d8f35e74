"""Connections, identifiers and the embedded server."""

from powertools_core.db.connection import connect, connect_async, resolve_url, sqlalchemy_engine
from powertools_core.db.identifiers import qualify, quote_ident, validate_prefix
from powertools_core.db.urls import mask_url

__all__ = [
    "connect",
    "connect_async",
    "mask_url",
    "qualify",
    "quote_ident",
    "resolve_url",
    "sqlalchemy_engine",
    "validate_prefix",
]
