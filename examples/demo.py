"""The README's first command (`./dev demo`): powertools on the embedded default, end to end.

It drives the real `powertools` CLI the way a new user would, against the embedded server (no
database configuration needed), and prints what each step reports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def powertools(*args: str) -> int:
    exe = shutil.which("powertools") or sys.argv[0]
    print(f"\n$ powertools {' '.join(args)}", flush=True)
    return subprocess.run([exe, *args], check=False).returncode


def main() -> int:
    env_db = os.environ.get("POWERTOOLS_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if env_db:
        print("note: a database URL is set in the environment; the demo uses it")
    steps = [("install",), ("install",), ("db", "status")]
    for step in steps:
        rc = powertools(*step)
        if rc != 0:
            print(f"demo: `powertools {' '.join(step)}` exited {rc}", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
