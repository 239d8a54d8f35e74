"""Starting ``powertools worker run`` as a real subprocess for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from powertools_core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
POWERTOOLS = Path(sys.executable).with_name("powertools")


def worker_env(settings: Settings) -> dict[str, str]:
    assert settings.database_url
    env = dict(os.environ)
    env.update(
        PT_RECORD_URL=settings.database_url,
        PYTHONPATH=str(ROOT),
        POWERTOOLS_DATABASE_URL=settings.database_url,
        POWERTOOLS_PREFIX=settings.prefix,
    )
    env.pop("POWERTOOLS_APP", None)
    return env


def start_worker(settings: Settings, *args: str) -> subprocess.Popen[str]:
    cmd = [
        str(POWERTOOLS),
        "worker",
        "run",
        "--app",
        "tests.support.apps.recorder",
        "--heartbeat",
        "200ms",
        "--rescue-after",
        "2s",
        "--poll-interval",
        "200ms",
        "--election-interval",
        "200ms",
        *args,
    ]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=worker_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
