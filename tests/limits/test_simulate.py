"""`limiter simulate`: verdicts from the pure rule, and proof that it touches nothing."""

from __future__ import annotations

import json

import psycopg
import pytest
from syrupy.assertion import SnapshotAssertion

from powertools_core.config import Settings
from powertools_core.limits.glossary import GLOSSARY
from tests.support.cli import invoke, one_line_error, run_process

APP = "tests.limits.app_workers"
START = "2026-01-01T12:00:00Z"


def _json(args: list[str]) -> dict:
    run = invoke(["limiter", "simulate", *args, "--app", APP, "--start", START, "-f", "json"])
    assert run.exit_code == 0, run.output
    return json.loads(run.stdout)


def test_a_burst_drains_the_bucket_then_blocks_until_the_exact_refill(
    snapshot: SnapshotAssertion,
) -> None:
    data = _json(["LimApiCall", "--count", "4"])
    assert data["schema_version"] == 1 and data["command"] == "limiter simulate"
    assert data["worker"] == "tests.limits.app_workers.LimApiCall"
    assert [v["result"] for v in data["verdicts"]] == ["reserved"] * 3 + ["blocked"]
    assert [v.get("tokens_left") for v in data["verdicts"][:3]] == [2, 1, 0]
    blocked = data["verdicts"][3]
    assert blocked["code"] == "limit_reached"
    assert blocked["retry_at"] == "2026-01-01T12:00:00.333334Z"
    assert data == snapshot


def test_spacing_requests_at_the_refill_rate_keeps_every_request_reserved() -> None:
    data = _json(["LimApiCall", "--count", "10", "--every", "334ms"])
    assert data["reserved"] == 10 and data["blocked"] == 0


def test_overrides_alone_simulate_a_worker_that_declares_no_limit() -> None:
    data = _json(
        [
            "LimPlain",
            "--bucket-capacity",
            "2",
            "--bucket-span",
            "10s",
            "--count",
            "3",
            "--weight",
            "2",
        ]
    )
    assert [v["result"] for v in data["verdicts"]] == ["reserved", "blocked", "blocked"]
    assert data["limits"][0]["source"] == "override"
    assert data["verdicts"][1]["retry_at"] == "2026-01-01T12:00:10Z"


def test_partitioned_weighted_limits_resolve_from_args_and_concurrency_is_noted() -> None:
    data = _json(["LimTenantSync", "--args", '{"tenant": "acme", "cost": 2}', "--count", "2"])
    assert data["limits"][0]["partition"] == "acme" and data["limits"][0]["weight"] == 2
    assert [v["result"] for v in data["verdicts"]] == ["reserved", "blocked"]
    assert data["verdicts"][1]["retry_at"] == "2026-01-01T12:01:00Z"
    assert "lim-tenant-run" in data["ignored"][0]


def test_ansi_output(snapshot: SnapshotAssertion) -> None:
    run = invoke(
        ["limiter", "simulate", "LimApiCall", "--count", "4", "--app", APP, "--start", START]
    )
    assert run.exit_code == 0, run.output
    assert run.stdout == snapshot


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Nope"], "unknown worker 'Nope'"),
        (["LimTenantSync", "--args", "{not json"], "--args is not valid JSON"),
        (["LimTenantSync", "--args", "[1]"], "--args must be a JSON object"),
        (["LimTenantSync"], "no 'tenant' key"),
        (["LimTenantSync", "--args", '{"tenant": "a", "cost": 9}'], "exceeds bucket_capacity"),
        (["LimPlain"], "declares no rate limit"),
        (["LimApiCall", "--weight", "4"], "weight 4 exceeds bucket_capacity 3"),
        (["LimApiCall", "--every", "soon"], "invalid --every"),
        (["LimApiCall", "--count", "0"], "--count must be between"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    run = invoke(["limiter", "simulate", *args, "--app", APP])
    assert run.exit_code == 2
    assert message in one_line_error(run)


def test_it_never_connects_so_an_unreachable_database_does_not_matter(tmp_path: object) -> None:
    run = run_process(
        [
            "limiter",
            "simulate",
            "LimApiCall",
            "--count",
            "4",
            "--app",
            APP,
            "-f",
            "json",
            "--database-url",
            "postgresql://nobody@127.0.0.1:1/none",
        ],
        env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[2])},
    )
    assert run.exit_code == 0, run.output
    assert len(json.loads(run.stdout)["verdicts"]) == 4


def test_it_changes_no_rows_in_an_installed_schema(
    installed: Settings, conn: psycopg.Connection
) -> None:
    def counts() -> tuple:
        return conn.execute(
            f'SELECT (SELECT count(*) FROM "{installed.prefix}".powertools_rate_limits),'
            f' (SELECT count(*) FROM "{installed.prefix}".powertools_rate_buckets),'
            f' (SELECT count(*) FROM "{installed.prefix}".powertools_audit_events)'
        ).fetchone()

    before = counts()
    run = invoke(
        [
            "limiter",
            "simulate",
            "LimApiCall",
            "--count",
            "5",
            "--app",
            APP,
            "--database-url",
            installed.database_url or "",
            "--prefix",
            installed.prefix,
        ]
    )
    assert run.exit_code == 0, run.output
    assert counts() == before == (0, 0, 0)


@pytest.mark.parametrize("command", ["simulate", "explain"])
def test_help_docs_and_constant_carry_the_same_glossary(command: str) -> None:
    from pathlib import Path

    def words(text: str) -> str:
        return " ".join(text.split())

    run = invoke(["limiter", command, "--help"])
    assert run.exit_code == 0
    assert words(GLOSSARY) in words(run.stdout)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "limits.md").read_text()
    block = docs.split("<!-- glossary:start -->\n", 1)[1].split("<!-- glossary:end -->", 1)[0]
    assert block == GLOSSARY
