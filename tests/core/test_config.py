from __future__ import annotations

from pathlib import Path

import pytest

from powertools_core.config import find_config_file, load_settings
from powertools_core.errors import InvalidDatabaseUrl, InvalidInput

FLAG = "postgresql://flag@localhost/flag"
PT_ENV = "postgresql://ptenv@localhost/ptenv"
DB_ENV = "postgresql://dbenv@localhost/dbenv"
FILE = "postgresql://file@localhost/file"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder whose powertools.toml sets every source-able value."""
    _write(
        tmp_path,
        "powertools.toml",
        f'database_url = "{FILE}"\nprefix = "file_jobs"\napp = ["file.workers"]\n'
        'actor = "file-actor"\n',
    )
    return tmp_path


@pytest.mark.parametrize(
    ("flag", "env", "expected", "source"),
    [
        (FLAG, {"POWERTOOLS_DATABASE_URL": PT_ENV, "DATABASE_URL": DB_ENV}, FLAG, "flag"),
        (
            None,
            {"POWERTOOLS_DATABASE_URL": PT_ENV, "DATABASE_URL": DB_ENV},
            PT_ENV,
            "POWERTOOLS_DATABASE_URL",
        ),
        (None, {"DATABASE_URL": DB_ENV}, DB_ENV, "DATABASE_URL"),
        (None, {"POWERTOOLS_DATABASE_URL": "", "DATABASE_URL": DB_ENV}, DB_ENV, "DATABASE_URL"),
        (None, {}, FILE, "config"),
    ],
)
def test_database_url_precedence(
    project: Path, flag: str | None, env: dict[str, str], expected: str, source: str
) -> None:
    s = load_settings(database_url=flag, env=env, cwd=project)
    assert (s.database_url, s.database_source) == (expected, source)
    assert s.config_path == str(project / "powertools.toml")


def test_nothing_configured_means_the_embedded_server(tmp_path: Path) -> None:
    s = load_settings(env={}, cwd=tmp_path)
    assert s.database_url is None
    assert s.database_source == "embedded"
    assert s.prefix == "public"
    assert s.config_path is None


def test_prefix_app_and_actor_precedence(project: Path) -> None:
    env = {
        "POWERTOOLS_PREFIX": "env_jobs",
        "POWERTOOLS_APP": "env.a, env.b",
        "POWERTOOLS_ACTOR": "env-actor",
    }
    flagged = load_settings(
        prefix="flag_jobs", app=["flag.workers"], actor="flag-actor", env=env, cwd=project
    )
    assert (flagged.prefix, flagged.app, flagged.actor) == (
        "flag_jobs",
        ("flag.workers",),
        "flag-actor",
    )
    from_env = load_settings(env=env, cwd=project)
    assert (from_env.prefix, from_env.app, from_env.actor) == (
        "env_jobs",
        ("env.a", "env.b"),
        "env-actor",
    )
    from_file = load_settings(env={}, cwd=project)
    assert (from_file.prefix, from_file.app, from_file.actor) == (
        "file_jobs",
        ("file.workers",),
        "file-actor",
    )


def test_pyproject_section_is_found_from_a_subfolder(tmp_path: Path) -> None:
    _write(
        tmp_path, "pyproject.toml", '[project]\nname = "x"\n\n[tool.powertools]\nprefix = "py"\n'
    )
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    s = load_settings(env={}, cwd=sub)
    assert s.prefix == "py"
    assert s.config_path == str(tmp_path / "pyproject.toml")


def test_pyproject_without_our_section_is_skipped_and_the_search_goes_up(tmp_path: Path) -> None:
    _write(tmp_path, "powertools.toml", 'prefix = "outer"\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    _write(inner, "pyproject.toml", '[project]\nname = "inner"\n')
    assert load_settings(env={}, cwd=inner).prefix == "outer"


def test_powertools_toml_wins_over_pyproject_in_the_same_folder(tmp_path: Path) -> None:
    _write(tmp_path, "pyproject.toml", '[tool.powertools]\nprefix = "from_pyproject"\n')
    _write(tmp_path, "powertools.toml", 'prefix = "from_toml"\n')
    found = find_config_file(tmp_path)
    assert found is not None
    assert found[0].name == "powertools.toml"
    assert load_settings(env={}, cwd=tmp_path).prefix == "from_toml"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('prefix = "unterminated\n', "cannot read config file"),
        ('prefx = "typo"\n', "prefx"),
        ("prefix = 3\n", "prefix"),
        ('queues = { default = "ten" }\n', "queues.default"),
    ],
)
def test_config_file_errors_name_the_file_and_the_key(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = _write(tmp_path, "powertools.toml", text)
    with pytest.raises(InvalidInput) as caught:
        load_settings(env={}, cwd=tmp_path)
    message = caught.value.one_line()
    assert str(path) in message
    assert fragment in message
    assert "\n" not in message


def test_invalid_prefix_in_the_config_file_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "powertools.toml", 'prefix = "Bad-Name"\n')
    with pytest.raises(InvalidInput, match="invalid prefix"):
        load_settings(env={}, cwd=tmp_path)


def test_explicit_empty_flags_are_errors_not_defaults(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="invalid prefix"):
        load_settings(prefix="", env={"POWERTOOLS_PREFIX": "env_jobs"}, cwd=tmp_path)
    with pytest.raises(InvalidDatabaseUrl, match="empty database URL"):
        load_settings(database_url="", env={"DATABASE_URL": DB_ENV}, cwd=tmp_path)


def test_empty_environment_values_count_as_unset(tmp_path: Path) -> None:
    s = load_settings(env={"POWERTOOLS_PREFIX": "", "POWERTOOLS_APP": ""}, cwd=tmp_path)
    assert s.prefix == "public"
    assert s.app == ()


def test_flag_url_is_normalised(tmp_path: Path) -> None:
    s = load_settings(database_url=" postgresql+psycopg://u@h/d ", env={}, cwd=tmp_path)
    assert s.database_url == "postgresql://u@h/d"
