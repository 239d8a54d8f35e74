"""`powertools install` through the CLI: output contract, errors, exit codes, snapshots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from powertools_core.db.urls import mask_url
from powertools_core.migrate import head_revision
from powertools_core.schema.powertools import VERSION_TABLE
from tests.support.catalog import snapshot as catalog
from tests.support.cli import Run, invoke, normalise, one_line_error, process_env
from tests.support.roles import as_url, unprivileged_url

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"
SECRET = "Sup3r-s3cret-pw"


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


def _revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    from powertools_core.migrate import _config

    script = ScriptDirectory.from_config(_config("public"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _stable_text(run: Run, url: str, schema: str) -> str:
    head = head_revision()
    return normalise(
        run.stdout,
        {
            f"applied {', '.join(_revisions())} (now at {head})": (
                "applied <all revisions> (now at <head>)"
            ),
            f"(at {head})": "(at <head>)",
            mask_url(url): "<database>",
            schema: "<schema>",
        },
    )


def _stable_json(run: Run, url: str, schema: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(run.stdout)
    assert data["schema_version"] == 1
    assert data["database"] == mask_url(url)
    assert data["prefix"] == schema
    data["database"], data["prefix"] = "<database>", "<schema>"
    if data["applied"]:
        assert data["applied"] == _revisions()
        data["applied"] = ["<all revisions>"]
    for key in ("revision_before", "revision_after"):
        if data[key] is not None:
            assert data[key] == head_revision()
            data[key] = "<head>"
    return data


# --- success output ---------------------------------------------------------------------------


def test_install_then_again_ansi(
    database_url: str, schema: str, snapshot: SnapshotAssertion
) -> None:
    args = ["install", "--database-url", database_url, "--prefix", schema]

    first = invoke(args)
    second = invoke(args)

    assert (first.exit_code, second.exit_code) == (0, 0)
    assert first.stderr == second.stderr == ""
    assert "already up to date" in second.stdout
    assert _stable_text(first, database_url, schema) == snapshot(name="fresh")
    assert _stable_text(second, database_url, schema) == snapshot(name="up_to_date")


def test_install_then_again_json(
    database_url: str, schema: str, snapshot_json: SnapshotAssertion
) -> None:
    args = ["install", "--database-url", database_url, "--prefix", schema, "--format", "json"]

    first = invoke(args)
    second = invoke(args)

    assert (first.exit_code, second.exit_code) == (0, 0)
    assert first.stderr == second.stderr == ""  # stdout holds exactly one JSON object
    fresh, again = (
        _stable_json(first, database_url, schema),
        _stable_json(second, database_url, schema),
    )
    assert again["up_to_date"] is True
    assert fresh == snapshot_json(name="fresh")
    assert again == snapshot_json(name="up_to_date")


def test_install_into_a_named_prefix_from_the_environment(fresh_database: str) -> None:
    run = invoke(
        ["install"],
        env={"POWERTOOLS_DATABASE_URL": fresh_database, "POWERTOOLS_PREFIX": "app_jobs"},
    )
    assert run.exit_code == 0, run.output
    with psycopg.connect(fresh_database) as c:
        assert c.execute("SELECT obj_description('app_jobs.oban_jobs'::regclass)").fetchone() == (
            "14",
        )
        assert c.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,)


def test_dry_run_prints_sql_that_installs_and_changes_nothing(
    database_url: str, schema: str
) -> None:
    before = catalog(database_url, schema, include_ours=True)

    run = invoke(["install", "--dry-run", "--database-url", database_url, "--prefix", schema])

    assert run.exit_code == 0, run.output
    assert catalog(database_url, schema, include_ours=True) == before
    header = f"-- powertools install --dry-run: SQL for schema {schema} at {mask_url(database_url)}"
    assert run.stdout.startswith(header + "\n")
    assert "CREATE TABLE" in run.stdout
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(run.stdout)  # type: ignore[arg-type]
    again = invoke(["install", "--dry-run", "--database-url", database_url, "--prefix", schema])
    assert again.stdout == f"-- schema {schema} is already up to date; nothing would run\n"


def test_dry_run_json_carries_the_sql(database_url: str, schema: str) -> None:
    run = invoke(
        ["install", "--dry-run", "-f", "json", "--database-url", database_url, "--prefix", schema]
    )
    data = json.loads(run.stdout)
    assert data["dry_run"] is True and data["sql"].startswith("BEGIN;")
    assert catalog(database_url, schema, include_ours=True)["schema"] == [(0,)]


def test_older_oban_warns_and_exits_1(database_url: str, schema: str) -> None:
    from tests.support.oban_migrations import migrate_like_oban

    migrate_like_oban(database_url, schema, version=12)
    run = invoke(["install", "--database-url", database_url, "--prefix", schema])
    assert run.exit_code == 1
    assert "warning: oban_jobs is at Oban v12; powertools expects v14" in run.stdout


# --- bad input: rejected before any SQL -------------------------------------------------------

HOSTILE_PREFIXES = [
    "x;drop table y",
    '"quoted"',
    "A",
    "",
    "a" * 64,
    "pg_x",
    "jöbs",
    "public; select 1",
    "with space",
    "1starts_with_digit",
]


@pytest.mark.parametrize("prefix", HOSTILE_PREFIXES)
def test_hostile_prefix_is_rejected_before_connecting(prefix: str) -> None:
    # The URL is unreachable: any error other than the prefix one would mean SQL was attempted.
    run = invoke(["install", "--database-url", UNREACHABLE, "--prefix", prefix])

    assert run.exit_code == 2
    line = one_line_error(run)
    assert line.startswith("error: invalid prefix")
    assert "cannot reach" not in run.output
    assert run.stdout == ""


@pytest.mark.parametrize("prefix", ["x;drop table y", "A"])
def test_hostile_prefix_from_the_environment_and_in_json(prefix: str) -> None:
    run = invoke(
        ["install", "--format", "json"],
        env={"POWERTOOLS_DATABASE_URL": UNREACHABLE, "POWERTOOLS_PREFIX": prefix},
    )
    assert run.exit_code == 2
    data = json.loads(run.stdout)
    assert data["error"]["code"] == "invalid_input"
    assert data["exit_code"] == 2 and data["command"] == "install"
    one_line_error(run)


def test_prefix_of_63_characters_is_accepted(fresh_database: str) -> None:
    run = invoke(["install", "--dry-run", "--database-url", fresh_database, "--prefix", "a" * 63])
    assert run.exit_code == 0, run.output


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "mysql://app:pw@db/app",
        "postgresql://app@db/app?no_such_option=1",
        "",
    ],
)
def test_malformed_url_is_one_line_exit_2(url: str) -> None:
    run = invoke(["install", "--database-url", url])
    assert run.exit_code == 2
    line = one_line_error(run)
    assert "database URL" in line


def test_unreachable_server_is_one_line_exit_2(snapshot: SnapshotAssertion) -> None:
    run = invoke(["install", "--database-url", UNREACHABLE])
    assert run.exit_code == 2
    assert run.stdout == ""
    line = one_line_error(run)
    assert line.startswith("error: cannot reach the database at postgresql://nobody@127.0.0.1:1/x")
    assert run.stderr == snapshot


def test_unreachable_server_json(snapshot_json: SnapshotAssertion) -> None:
    run = invoke(["install", "--database-url", UNREACHABLE, "--format", "json"])
    assert run.exit_code == 2
    one_line_error(run)
    assert json.loads(run.stdout) == snapshot_json


def test_role_without_privileges_gets_a_permission_message(fresh_database: str) -> None:
    with unprivileged_url(fresh_database) as conninfo:
        run = invoke(["install", "--database-url", as_url(conninfo)])
        password = str(conninfo_to_dict(conninfo)["password"])
    assert run.exit_code == 2
    line = one_line_error(run)
    assert "permission denied" in line and "GRANT" in line
    assert password not in run.output


# --- passwords --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ansi", "json"])
def test_password_never_printed_on_error(fmt: str) -> None:
    url = f"postgresql://app:{SECRET}@127.0.0.1:1/app"
    for args in (["--database-url", url], []):
        env = {} if args else {"DATABASE_URL": url}
        run = invoke(["install", "--format", fmt, "-v", *args], env=env)
        assert run.exit_code == 2
        assert SECRET not in run.output
        assert "app:***@127.0.0.1:1" in run.output


@pytest.mark.parametrize("fmt", ["ansi", "json"])
def test_password_never_printed_on_success(fresh_database: str, fmt: str) -> None:
    with unprivileged_url(fresh_database) as conninfo:
        password = str(conninfo_to_dict(conninfo)["password"])
        url = as_url(conninfo)
        run = invoke(["install", "--dry-run", "--format", fmt, "--database-url", url])
    assert run.exit_code == 0, run.output
    assert password not in run.output
    assert ":***@" in run.output


# --- colour -----------------------------------------------------------------------------------


def _ansi(run: Run) -> bool:
    return "\x1b[" in run.output


def test_colour_only_when_allowed(database_url: str, schema: str) -> None:
    args = ["install", "--database-url", database_url, "--prefix", schema]
    forced = {"FORCE_COLOR": "1", "TERM": "xterm-256color", "NO_COLOR": None}

    assert _ansi(invoke(args, env=forced))
    assert not _ansi(invoke([*args, "--no-color"], env=forced))
    assert not _ansi(invoke(args, env={**forced, "NO_COLOR": "1"}))
    assert not _ansi(invoke(args, env={"NO_COLOR": None}))  # not a terminal

    error_args = ["install", "--database-url", UNREACHABLE]
    assert _ansi(invoke(error_args, env=forced))
    assert not _ansi(invoke([*error_args, "--no-color"], env=forced))
    assert not _ansi(invoke(error_args, env={**forced, "NO_COLOR": "1"}))


def test_json_is_never_coloured(database_url: str, schema: str) -> None:
    run = invoke(
        ["install", "-f", "json", "--database-url", database_url, "--prefix", schema],
        env={"FORCE_COLOR": "1", "TERM": "xterm-256color", "NO_COLOR": None},
    )
    assert not _ansi(run)
    json.loads(run.stdout)


# --- configuration through the CLI ------------------------------------------------------------


def test_flag_beats_environment(database_url: str, schema: str) -> None:
    run = invoke(
        ["install", "--database-url", database_url, "--prefix", schema],
        env={"POWERTOOLS_DATABASE_URL": UNREACHABLE, "DATABASE_URL": UNREACHABLE},
    )
    assert run.exit_code == 0, run.output


def test_powertools_database_url_beats_database_url(database_url: str, schema: str) -> None:
    run = invoke(
        ["install", "--prefix", schema],
        env={"POWERTOOLS_DATABASE_URL": UNREACHABLE, "DATABASE_URL": database_url},
    )
    assert run.exit_code == 2
    assert "nobody@127.0.0.1:1" in one_line_error(run)


def test_config_file_in_the_working_directory_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, schema: str
) -> None:
    (tmp_path / "powertools.toml").write_text(
        f"database_url = {json.dumps(database_url)}\nprefix = {json.dumps(schema)}\n"
    )
    monkeypatch.chdir(tmp_path)
    run = invoke(["install", "-f", "json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["prefix"] == schema


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("prefix = [unclosed\n", "cannot read config file"), ("colour = 1\n", "colour")],
)
def test_broken_config_file_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, fragment: str
) -> None:
    (tmp_path / "powertools.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    run = invoke(["install", "--database-url", UNREACHABLE])
    assert run.exit_code == 2
    line = one_line_error(run)
    assert fragment in line and "powertools.toml" in line


def test_usage_error_exits_2() -> None:
    run = invoke(["install", "--format", "xml"])
    assert run.exit_code == 2
    assert "Traceback" not in run.output


# --- several at once --------------------------------------------------------------------------


@pytest.mark.slow
def test_four_concurrent_install_processes(database_url: str, schema: str) -> None:
    argv = [
        sys.executable,
        "-m",
        "powertools_cli",
        "install",
        "--format",
        "json",
        "--database-url",
        database_url,
        "--prefix",
        schema,
    ]
    procs = [
        subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=process_env()
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in procs]

    assert [rc for rc, _, _ in outcomes] == [0, 0, 0, 0], outcomes
    actions = sorted(json.loads(out)["oban"]["action"] for _, out, _ in outcomes)
    assert actions == ["created", "found", "found", "found"]
    with psycopg.connect(database_url) as c:
        rows = c.execute(
            sql.SQL("SELECT version_num FROM {}").format(sql.Identifier(schema, VERSION_TABLE))
        ).fetchall()
    assert rows == [(head_revision(),)]
