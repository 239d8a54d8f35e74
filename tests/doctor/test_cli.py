"""``powertools doctor`` through the CLI: exit codes, the JSON contract and its schema, ANSI
output in 80 columns, usage errors, and the help text that documents it all."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rich.console import Console
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from powertools_cli.render.ansi import render_ansi
from powertools_core.config import Settings
from powertools_core.doctor import CHECK_IDS, STRICT_PROMOTED, DoctorResult, Thresholds
from powertools_core.doctor.report import SCHEMA_PATH, json_schema, json_schema_text
from tests.doctor.conftest import add_job, q
from tests.support.cli import invoke, one_line_error, run_process

DEAD_PRODUCER = "00000000-0000-4000-8000-00000000dead"


@pytest.fixture
def json_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.fixture(autouse=True)
def no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from an empty folder so no pyproject/powertools.toml changes the settings."""
    monkeypatch.chdir(tmp_path)


def _args(settings: Settings, *extra: str) -> list[str]:
    assert settings.database_url
    return ["doctor", "--database-url", settings.database_url, "--prefix", settings.prefix, *extra]


def _normalised(result: DoctorResult) -> DoctorResult:
    """Volatile fields made fixed: durations, schema name, URL, server version."""
    text = result.model_dump_json()
    text = text.replace(result.prefix, "app_jobs")
    data = json.loads(text)
    data["database"] = {"server_version": "PG", "url": "postgresql://app@db/app"}
    for check in data["checks"]:
        check["duration_ms"] = 1.0
    return DoctorResult.model_validate(data)


def _ansi(result: DoctorResult) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, color_system=None, highlight=False, emoji=False)
    render_ansi(result, console)
    return buffer.getvalue()


def _break(settings: Settings, conn: psycopg.Connection) -> None:
    schema = settings.prefix
    q(conn, "DROP INDEX {s}.oban_jobs_meta_index", schema)
    q(conn, "COMMENT ON TABLE {s}.oban_jobs IS '15'", schema)
    add_job(conn, schema, queue="mailers", age="3 hours")
    q(
        conn,
        "INSERT INTO {s}.powertools_producers (uuid, node, queue, pid, beat_at) "
        "VALUES (%s, 'node-a', 'default', 4242, timezone('UTC', now()) - interval '10 minutes')",
        schema,
        (DEAD_PRODUCER,),
    )
    add_job(
        conn,
        schema,
        state="executing",
        attempted_by=["node-a", DEAD_PRODUCER],
        attempted_age="12 minutes",
    )


def _validate(payload: dict[str, Any]) -> DoctorResult:
    """The output against its schema: the model (extra='forbid' everywhere) must take it back
    unchanged, and its keys must be exactly the schema's."""
    schema = json_schema()
    assert set(payload) == set(schema["properties"])
    assert set(schema["required"]) <= set(payload)
    result = DoctorResult.model_validate(payload)
    assert result.to_json_dict() == payload
    defs = schema["$defs"]
    for finding in payload["findings"]:
        assert set(finding) == set(defs["Finding"]["properties"])
    for check in payload["checks"]:
        assert set(check) == set(defs["CheckResult"]["properties"])
    return result


def test_clean_json_and_ansi(clean: Settings, json_snapshot: SnapshotAssertion) -> None:
    run = invoke(_args(clean, "--format", "json"))
    assert run.exit_code == 0, run.output
    payload = json.loads(run.stdout)
    result = _validate(payload)
    assert payload["exit_code"] == run.exit_code == 0
    assert payload["database"]["url"] == clean.database_url  # no password to mask here
    assert [c["id"] for c in payload["checks"]] == list(CHECK_IDS)
    assert _normalised(result).to_json_dict() == json_snapshot(name="clean_json")

    ansi = invoke(_args(clean), env={"COLUMNS": "80"})
    assert ansi.exit_code == 0
    assert f"OK: all {len(CHECK_IDS)} checks passed" in ansi.stdout
    assert "\x1b[" not in ansi.stdout  # plain when piped


def test_broken_json_and_ansi(
    installed: Settings,
    conn: psycopg.Connection,
    json_snapshot: SnapshotAssertion,
    snapshot: SnapshotAssertion,
) -> None:
    _break(installed, conn)
    calm = ("--threshold", "long_transaction=1h")
    run = invoke(_args(installed, "--format", "json", *calm))
    payload = json.loads(run.stdout)
    result = _validate(payload)
    assert payload["exit_code"] == run.exit_code == 2
    assert payload["oban_version_db"] == 15 and payload["oban_version_expected"] == 14
    assert payload["summary"] == {"error": 1, "warning": 5}
    assert _normalised(result).to_json_dict() == json_snapshot(name="broken_json")
    assert _ansi(_normalised(result)) == snapshot(name="broken_ansi")

    lines = invoke(_args(installed, *calm), env={"COLUMNS": "80"}).stdout.splitlines()
    prose = [ln for ln in lines if not ln.startswith("    fix: ")]
    assert max(len(ln) for ln in prose) <= 80  # remediations are left whole, to paste

    strict = invoke(_args(installed, "--format", "json", "--strict", *calm))
    data = json.loads(strict.stdout)
    assert data["exit_code"] == strict.exit_code == 2
    promoted = {f["check"] for f in data["findings"] if f["severity"] == "error"}
    assert promoted == {"missing_indexes", "oban_migration_version", "uniqueness_timeout_risk"}


def test_warnings_only_exit_1_and_strict_exit_2(
    installed: Settings, conn: psycopg.Connection
) -> None:
    q(conn, "COMMENT ON TABLE {s}.oban_jobs IS '15'", installed.prefix)
    run = invoke(_args(installed, "--format", "json", "--check", "oban_migration_version"))
    assert json.loads(run.stdout)["exit_code"] == run.exit_code == 1
    strict = invoke(_args(installed, "-f", "json", "--strict", "-c", "oban_migration_version"))
    assert json.loads(strict.stdout)["exit_code"] == strict.exit_code == 2


def test_check_selects_a_subset_in_run_order(installed: Settings) -> None:
    run = invoke(
        _args(
            installed,
            "-f",
            "json",
            "--check",
            "stale_producers,missing_indexes",
            "-c",
            "autovacuum",
        )
    )
    ids = [c["id"] for c in json.loads(run.stdout)["checks"]]
    assert ids == ["missing_indexes", "stale_producers", "autovacuum"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--check", "no_such_check"], "unknown check 'no_such_check'"),
        (["--threshold", "nonsense=1"], "unknown doctor threshold 'nonsense'"),
        (["--threshold", "backlog_age=soon"], "invalid backlog_age 'soon'"),
        (["--threshold", "backlog_age"], "malformed --threshold"),
        (["--prefix", "Bad;Name"], "invalid prefix"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    installed: Settings, extra: list[str], expected: str
) -> None:
    run = invoke([*_args(installed), *extra])
    assert run.exit_code == 2
    assert expected in one_line_error(run)


def test_config_file_thresholds_and_typos(
    installed: Settings, conn: psycopg.Connection, tmp_path: Path
) -> None:
    add_job(conn, installed.prefix, queue="slow", age="20 minutes")
    config = tmp_path / "powertools.toml"
    config.write_text('[doctor]\nbacklog_age = "1h"\n')
    assert invoke(_args(installed, "-c", "queue_backlog_age")).exit_code == 0
    config.write_text('[doctor]\nbacklog_age = "5m"\n')
    assert invoke(_args(installed, "-c", "queue_backlog_age")).exit_code == 1
    config.write_text('[doctor]\nbacklog_agee = "5m"\n')
    run = invoke(_args(installed, "-c", "queue_backlog_age"))
    assert run.exit_code == 2
    assert "unknown doctor threshold 'backlog_agee'" in one_line_error(run)


def test_unreachable_database_is_one_line_json_error() -> None:
    url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    run = invoke(["doctor", "--database-url", url, "--format", "json"])
    assert run.exit_code == 2
    payload = json.loads(run.stdout)
    assert payload["command"] == "doctor" and payload["exit_code"] == 2
    assert payload["error"]["code"] == "database_unavailable"


def test_console_script_exit_code_is_the_json_exit_code(
    installed: Settings, conn: psycopg.Connection
) -> None:
    q(conn, "COMMENT ON TABLE {s}.oban_jobs IS '12'", installed.prefix)
    run = run_process(_args(installed, "--format", "json"))
    assert run.exit_code == json.loads(run.stdout)["exit_code"] == 2


def test_the_shipped_json_schema_is_generated_from_the_model() -> None:
    assert SCHEMA_PATH.read_text() == json_schema_text(), "regenerate doctor/schema.json"


def test_help_documents_checks_strict_set_thresholds_and_json_fields() -> None:
    text = " ".join(invoke(["doctor", "--help"], env={"COLUMNS": "200"}).stdout.split())
    for check in CHECK_IDS:
        assert check in text
    strict_line = text.split("--strict turns the warnings of exactly these checks into errors:")[1]
    assert strict_line.split("(schema drift)")[0].strip() == ", ".join(STRICT_PROMOTED)
    defaults = ", ".join(f"{k} {v}" for k, v in Thresholds().as_strings().items())
    assert defaults in text
    for field in DoctorResult.model_fields:
        assert field in text, field
    assert "$ powertools doctor --strict --format json" in text
