from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powertools_core.archive import ArchiveFilter, ArchiveRequest, resolve_retention, run_archive
from powertools_core.archive.policy import cutoffs, format_retention, parse_state_spec
from powertools_core.archive.restore import run_restore
from powertools_core.errors import InvalidInput
from tests.archive.conftest import ALL_STATES, count, insert_job, job_row

ages = st.integers(min_value=0, max_value=10_000).map(lambda n: timedelta(minutes=n))


@given(st.dictionaries(st.sampled_from(["completed", "cancelled", "discarded"]), ages, min_size=1))
def test_state_spec_round_trips(retention: dict[str, timedelta]) -> None:
    assert resolve_retention(format_retention(retention), None) == retention
    limits = cutoffs(retention, datetime(2026, 1, 1, tzinfo=UTC))
    assert all(limits[s] == datetime(2026, 1, 1) - a for s, a in retention.items())


@pytest.mark.parametrize("spec", ["available=1d", "executing", "completed=1d,completed=2d", ""])
def test_bad_state_specs_are_rejected(spec: str) -> None:
    with pytest.raises(InvalidInput):
        parse_state_spec(spec)


def test_archive_then_restore_round_trips_and_skips_non_terminal(installed, db) -> None:
    prefix = installed.prefix
    ids = {state: insert_job(db, prefix, state=state) for state in ALL_STATES}
    before = {s: job_row(db, prefix, "oban_jobs", i) for s, i in ids.items()}
    result = run_archive(
        installed,
        ArchiveRequest(retention=resolve_retention(None, None), batch_size=2),
        actor="alice",
        reason="test archive run",
    )
    assert result.moved == 3 and result.run.status == "completed"
    assert count(db, prefix, "oban_jobs") == 5
    for state in ("completed", "discarded", "cancelled"):
        assert job_row(db, prefix, "powertools_job_archive", ids[state]) == before[state]
    restored = run_restore(
        installed,
        ArchiveFilter(ids=(ids["completed"], ids["discarded"], ids["cancelled"])),
        actor="alice",
        reason="test restore run",
    )
    assert restored.moved == 3 and restored.exit_status() == 0
    assert {s: job_row(db, prefix, "oban_jobs", i) for s, i in ids.items()} == before
    assert count(db, prefix, "powertools_job_archive") == 0
