"""Expected failures, each with a stable code, a one-line message and an exit code.

The CLI turns these into one line on stderr (and an ``error`` object in JSON) and never a
traceback; anything that is *not* a ``PowertoolsError`` is a bug.
"""

from __future__ import annotations


class PowertoolsError(Exception):
    """Base of every expected error. ``hint`` tells the user what to do next."""

    code = "error"
    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        if self.hint:
            text = f"{text} ({' '.join(self.hint.split())})"
        return text


class InvalidInput(PowertoolsError):
    """Bad arguments or options, caught before any SQL runs."""

    code = "invalid_input"


class InvalidDatabaseUrl(InvalidInput):
    code = "invalid_database_url"


class DatabaseUnavailable(PowertoolsError):
    """The server could not be reached, refused us, or went away mid-command."""

    code = "database_unavailable"


class DatabaseError(PowertoolsError):
    """The server answered with an error the command could not recover from."""

    code = "database_error"


class PermissionDenied(PowertoolsError):
    code = "permission_denied"


class SchemaNotInstalled(PowertoolsError):
    code = "schema_not_installed"


class VersionMismatch(PowertoolsError):
    """The database was set up by a newer powertools than the one running."""

    code = "version_mismatch"


class EmbeddedServerError(PowertoolsError):
    code = "embedded_server_error"


class NotFound(PowertoolsError):
    code = "not_found"
