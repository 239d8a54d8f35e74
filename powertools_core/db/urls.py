"""Database URL handling: validation and masking (passwords never reach any output)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from powertools_core.errors import InvalidDatabaseUrl

_MASK = "***"
_URL_HINT = "expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME or key=value pairs"


def check_url(url: str) -> str:
    """Reject what psycopg would not parse, with a message that does not echo a password."""
    text = url.strip()
    if not text:
        raise InvalidDatabaseUrl("empty database URL", hint=_URL_HINT)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in {"postgresql", "postgres", "postgresql+psycopg"}:
            raise InvalidDatabaseUrl(
                f"unsupported database URL scheme {scheme!r} in {mask_url(text)}", hint=_URL_HINT
            )
        if scheme == "postgresql+psycopg":
            text = "postgresql://" + text.split("://", 1)[1]
    try:
        psycopg.conninfo.conninfo_to_dict(text)
    except psycopg.ProgrammingError:
        raise InvalidDatabaseUrl(f"invalid database URL {mask_url(text)}", hint=_URL_HINT) from None
    return text


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (URL and key=value forms)."""
    if "://" in url:
        try:
            parts = urlsplit(url)
        except ValueError:
            return re.sub(r"//[^@/]*@", f"//{_MASK}@", url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                user, password = userinfo.split(":", 1)
                if password:
                    userinfo = f"{user}:{_MASK}"
            netloc = f"{userinfo}@{host}"
        query = parts.query
        if query:
            pairs = [
                (k, _MASK if k.lower() == "password" else v)
                for k, v in parse_qsl(query, keep_blank_values=True)
            ]
            query = urlencode(pairs, safe="/*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", rf"\g<1>{_MASK}", url, flags=re.I)
