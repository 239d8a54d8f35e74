"""Run every benchmark module in this folder that defines ``main()``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

SKIP = {"common", "__main__", "__init__"}


def main() -> int:
    folder = Path(__file__).parent
    status = 0
    for info in sorted(pkgutil.iter_modules([str(folder)]), key=lambda m: m.name):
        if info.name in SKIP or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        entry = getattr(module, "main", None)
        if callable(entry):
            print(f"\n=== bench.{info.name} ===", flush=True)
            status = max(status, int(entry() or 0))
    return status


if __name__ == "__main__":
    sys.exit(main())
