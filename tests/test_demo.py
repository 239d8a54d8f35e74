"""The README's first command: the demo installs, enqueues, works every job off and reports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_settles_every_job_and_shows_doctor_and_ops(fresh_database: str) -> None:
    env = dict(os.environ, POWERTOOLS_DATABASE_URL=fresh_database, NO_COLOR="1")
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    [states] = re.findall(r"jobs by state\s+(.*)", out)
    assert set(re.findall(r"([a-z]+) \d+", states)) <= {"completed", "discarded", "cancelled"}
    assert "$ powertools doctor --prefix powertools_demo" in out
    assert re.search(r"dry run: retry would act on (\d+) of \1 selected jobs", out)
    assert "Traceback" not in out + done.stderr
