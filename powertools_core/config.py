"""Settings and where they come from.

Order, highest first: explicit argument (the CLI flag) > ``POWERTOOLS_*`` environment >
``DATABASE_URL`` (database only) > ``[tool.powertools]`` in pyproject.toml or ``powertools.toml``
(the nearest one at or above the working directory) > built-in defaults (the embedded server).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from powertools_core.db.identifiers import validate_prefix
from powertools_core.db.urls import check_url
from powertools_core.errors import InvalidInput

DatabaseSource = Literal["flag", "POWERTOOLS_DATABASE_URL", "DATABASE_URL", "config", "embedded"]


class FileConfig(BaseModel):
    """What a config file may hold; unknown keys are an error so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")

    database_url: str | None = None
    prefix: str | None = None
    app: list[str] | str | None = None
    actor: str | None = None
    node: str | None = None
    queues: dict[str, int] | None = None
    doctor: dict[str, Any] = Field(default_factory=dict)
    archive: dict[str, Any] = Field(default_factory=dict)
    redact_keys: list[str] | None = None


class Settings(BaseModel):
    """Resolved settings for one command or worker."""

    model_config = ConfigDict(frozen=True)

    database_url: str | None = None
    database_source: DatabaseSource = "embedded"
    prefix: str = "public"
    app: tuple[str, ...] = ()
    actor: str | None = None
    node: str | None = None
    queues: dict[str, int] | None = None
    config_path: str | None = None
    doctor: dict[str, Any] = Field(default_factory=dict)
    archive: dict[str, Any] = Field(default_factory=dict)
    redact_keys: tuple[str, ...] | None = None


def find_config_file(start: Path | None = None) -> tuple[Path, FileConfig] | None:
    """The nearest ``powertools.toml`` or pyproject with ``[tool.powertools]``, walking upward."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        own = folder / "powertools.toml"
        if own.is_file():
            return own, _parse_file(own, _load_toml(own))
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            section = _load_toml(pyproject).get("tool", {}).get("powertools")
            if isinstance(section, dict):
                return pyproject, _parse_file(pyproject, section)
    return None


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc}") from None


def _parse_file(path: Path, data: Mapping[str, Any]) -> FileConfig:
    try:
        return FileConfig.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"invalid config in {path}: {where}: {first['msg']}") from None


def _split_modules(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(m.strip() for m in items if m.strip())


def load_settings(
    *,
    database_url: str | None = None,
    prefix: str | None = None,
    app: str | list[str] | None = None,
    actor: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve settings from arguments, environment and the nearest config file.

    The prefix is validated here, so a hostile ``--prefix`` is rejected before any SQL runs.
    """
    env = os.environ if env is None else env
    found = find_config_file(cwd)
    file_cfg = found[1] if found else FileConfig()

    source: DatabaseSource
    if database_url is not None:
        # An explicit flag is used as given: an empty one is an error, not "unset".
        url, source = check_url(database_url), "flag"
    elif env.get("POWERTOOLS_DATABASE_URL"):
        url, source = env["POWERTOOLS_DATABASE_URL"], "POWERTOOLS_DATABASE_URL"
    elif env.get("DATABASE_URL"):
        url, source = env["DATABASE_URL"], "DATABASE_URL"
    elif file_cfg.database_url:
        url, source = file_cfg.database_url, "config"
    else:
        url, source = None, "embedded"

    # An explicit (even empty) --prefix is validated as given; empty environment values and
    # missing keys fall through to the next source.
    if prefix is not None:
        chosen_prefix = prefix
    else:
        chosen_prefix = env.get("POWERTOOLS_PREFIX") or file_cfg.prefix or "public"
    validate_prefix(chosen_prefix)

    modules = (
        _split_modules(app)
        or _split_modules(env.get("POWERTOOLS_APP"))
        or _split_modules(file_cfg.app)
    )
    return Settings(
        database_url=url,
        database_source=source,
        prefix=chosen_prefix,
        app=modules,
        actor=actor or env.get("POWERTOOLS_ACTOR") or file_cfg.actor,
        node=env.get("POWERTOOLS_NODE") or file_cfg.node,
        queues=file_cfg.queues,
        config_path=str(found[0]) if found else None,
        doctor=file_cfg.doctor,
        archive=file_cfg.archive,
        redact_keys=tuple(file_cfg.redact_keys) if file_cfg.redact_keys is not None else None,
    )
