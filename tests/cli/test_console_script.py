"""The real `powertools` executable, and a non-editable install used from another directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from powertools_core.version import __version__
from tests.support.cli import console_script, one_line_error, process_env, run_process

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"


def test_version(tmp_path: Path) -> None:
    run = run_process(["--version"], cwd=tmp_path)
    assert (run.exit_code, run.stdout) == (0, f"powertools {__version__}\n")


def test_install_twice_from_another_directory(fresh_database: str, tmp_path: Path) -> None:
    first = run_process(["install", "--database-url", fresh_database], cwd=tmp_path)
    second = run_process(["install", "--database-url", fresh_database], cwd=tmp_path)

    assert first.exit_code == 0, first.output
    assert "installed" in first.stdout
    assert second.exit_code == 0, second.output
    assert "already up to date" in second.stdout
    with psycopg.connect(fresh_database) as conn:
        comment = conn.execute("SELECT obj_description('public.oban_jobs'::regclass)").fetchone()
    assert comment == ("14",)


def test_json_goes_to_stdout_only(fresh_database: str, tmp_path: Path) -> None:
    run = run_process(
        ["install", "--format", "json", "--database-url", fresh_database], cwd=tmp_path
    )
    assert run.exit_code == 0
    assert run.stderr == ""
    data = json.loads(run.stdout)
    assert (data["schema_version"], data["command"]) == (1, "install")


@pytest.mark.parametrize("prefix", ["x;drop table y", "A", ""])
def test_hostile_prefix_in_a_real_process(prefix: str, tmp_path: Path) -> None:
    run = run_process(["install", "--database-url", UNREACHABLE, "--prefix", prefix], cwd=tmp_path)
    assert run.exit_code == 2
    assert one_line_error(run).startswith("error: invalid prefix")


@pytest.mark.parametrize("fmt", ["ansi", "json"])
def test_unreachable_server_in_a_real_process(fmt: str, tmp_path: Path) -> None:
    run = run_process(["install", "--format", fmt, "--database-url", UNREACHABLE], cwd=tmp_path)
    assert run.exit_code == 2
    assert "cannot reach the database" in one_line_error(run)
    if fmt == "json":
        assert json.loads(run.stdout)["error"]["code"] == "database_unavailable"


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    run = run_process(["--help"], cwd=tmp_path, module=True)
    assert run.exit_code == 0
    assert "install" in run.stdout


# --- a non-editable install -------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    wheels = list(out.glob("oban_powertools-*.whl"))
    assert len(wheels) == 1, wheels
    yield wheels[0]


@pytest.mark.slow
def test_wheel_ships_the_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "powertools_core/migrations/env.py",
        "powertools_core/migrations/script.py.mako",
        "powertools_core/migrations/versions/0001_foundation.py",
        "powertools_cli/__main__.py",
    ):
        assert required in names, required
    versions = [n for n in names if n.startswith("powertools_core/migrations/versions/")]
    on_disk = [p for p in (ROOT / "powertools_core/migrations/versions").glob("*.py")]
    assert len([v for v in versions if v.endswith(".py")]) == len(on_disk)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "powertools = powertools_cli.app:main" in text


@pytest.mark.slow
def test_non_editable_install_works_from_any_directory(
    wheel: Path, fresh_database: str, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    # Only the installed copy is importable: the checkout is neither the cwd nor on the path.
    env = process_env({"PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"})

    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import powertools_core, powertools_cli; "
            "print(powertools_core.__file__); print(powertools_cli.__file__)",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
        check=False,
    )
    assert where.returncode == 0, where.stderr
    for line in where.stdout.splitlines():
        assert Path(line).is_relative_to(target), line

    def install() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "powertools_cli",
                "install",
                "--format",
                "json",
                "--database-url",
                fresh_database,
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=elsewhere,
            check=False,
            timeout=120,
        )

    first, second = install(), install()
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout)["oban"]["action"] == "created"
    assert second.returncode == 0, second.stdout + second.stderr
    assert json.loads(second.stdout)["up_to_date"] is True
    with psycopg.connect(fresh_database) as conn:
        comment = conn.execute("SELECT obj_description('public.oban_jobs'::regclass)").fetchone()
    assert comment == ("14",)
    assert not any(p.name == "alembic.ini" for p in elsewhere.iterdir())


def test_console_script_is_the_installed_one() -> None:
    script = console_script()
    assert os.access(script, os.X_OK)
    assert script.parent == Path(sys.executable).parent


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["instal"], "No such command 'instal'. Did you mean 'install'?"),
        (["install", "--format", "xml"], "Invalid value for '--format'"),
        (["install", "--no-such-option"], "No such option: --no-such-option"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], fragment: str, tmp_path: Path) -> None:
    run = run_process(args, cwd=tmp_path)
    assert run.exit_code == 2
    line = one_line_error(run)
    assert fragment in line
    assert "--help" in line


def test_a_group_alone_prints_its_help(tmp_path: Path) -> None:
    run = run_process(["db"], cwd=tmp_path)
    assert run.exit_code == 2
    assert "status" in run.output and "Traceback" not in run.output
