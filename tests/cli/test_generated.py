"""completions/ and man/ are generated from the CLI; these tests fail when they are stale."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from powertools_cli import generate
from powertools_cli.commands.common import result_models
from powertools_core.migrate import InstallResult
from tests.support.cli import console_script, process_env

ROOT = Path(__file__).resolve().parents[2]
STALE_HINT = "completions/ or man/ are stale: run ./dev gen and commit the result"


def test_completions_and_man_pages_are_up_to_date() -> None:
    stale = generate.stale_files(ROOT)
    assert stale == [], f"{STALE_HINT}\nstale: {', '.join(stale)}"


def test_one_man_page_per_command_and_group() -> None:
    nodes = list(generate.walk())
    names = {n.name for n in nodes}
    assert {"powertools", "powertools install", "powertools db", "powertools db status"} <= names
    pages = generate.man_pages()
    assert sorted(pages) == sorted(f"man/{n.page}.1" for n in nodes)


@pytest.mark.parametrize("node", list(generate.walk()), ids=lambda n: n.page)
def test_every_page_has_the_required_sections(node: generate.Node) -> None:
    page = generate.man_page(node)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT"):
        assert f".SH {section}\n" in page, section
    for code in ("0", "1", "2"):
        assert f".TP\n\\fB{code}\\fR\n" in page
    for var in (
        "POWERTOOLS_DATABASE_URL",
        "DATABASE_URL",
        "POWERTOOLS_PREFIX",
        "POWERTOOLS_APP",
        "POWERTOOLS_ACTOR",
        "POWERTOOLS_HOME",
        "NO_COLOR",
    ):
        assert f"\\fB{var}\\fR" in page
    if node.is_group:
        assert ".SH COMMANDS\n" in page


def test_every_command_with_json_output_declares_its_result_model() -> None:
    """DESIGN §9: JSON field names are documented in man/, derived from the result model."""
    missing = []
    for node in generate.walk():
        takes_format = any("--format" in getattr(p, "opts", ()) for p in node.command.params)
        if takes_format and not result_models(node.command.callback):
            missing.append(node.name)
        elif takes_format:
            assert ".SH JSON OUTPUT\n" in generate.man_page(node)
    assert missing == [], (
        "these commands take --format but declare no result model, so their man pages cannot "
        "list the JSON fields: decorate each with @common.returns(TheirResult), then ./dev gen: "
        + ", ".join(missing)
    )


def test_json_output_lists_every_field_of_the_model() -> None:
    node = next(n for n in generate.walk() if n.name == "powertools install")
    page = generate.man_page(node)
    for name in InstallResult.model_fields:
        assert f"\\fB{name}\\fR (" in page, name
    assert '\\fBoban.action\\fR ("created" | "found" | "would_create")' in page
    assert "\\fBerror.code\\fR (string)" in page


def test_help_examples_become_literal_blocks() -> None:
    node = next(n for n in generate.walk() if n.name == "powertools install")
    page = generate.man_page(node)
    assert ".nf\n$ powertools install\n" in page
    assert "$ powertools install \\-\\-dry\\-run > install.sql\n.fi\n" in page


def test_man_pages_render_without_warnings(tmp_path: Path) -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed")
    for path, text in generate.man_pages().items():
        target = tmp_path / Path(path).name
        target.write_text(text)
        proc = subprocess.run(
            [groff, "-man", "-Tutf8", "-ww", "-z", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0 and proc.stderr == "", (path, proc.stderr)


def test_generation_is_deterministic() -> None:
    assert generate.generated_files() == generate.generated_files()
    assert all("\\*(Dt" not in t and "2026-" not in t for t in generate.man_pages().values())


def test_check_mode_reports_stale_missing_and_extra_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
    assert "run ./dev gen" in capsys.readouterr().err

    assert generate.main(["--root", str(tmp_path)]) == 0
    assert generate.main(["--check", "--root", str(tmp_path)]) == 0

    (tmp_path / "man" / "powertools-install.1").write_text("old\n")
    (tmp_path / "man" / "powertools-removed.1").write_text("a command that no longer exists\n")
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "stale: man/powertools-install.1" in err
    assert "stale: man/powertools-removed.1" in err

    generate.main(["--root", str(tmp_path)])
    assert not (tmp_path / "man" / "powertools-removed.1").exists()
    assert generate.main(["--check", "--root", str(tmp_path)]) == 0


def test_completion_scripts_are_valid_shell() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    proc = subprocess.run(
        [bash, "-n", str(ROOT / "completions" / "powertools.bash")],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "_POWERTOOLS_COMPLETE=complete_zsh" in (ROOT / "completions" / "_powertools").read_text()
    assert "_POWERTOOLS_COMPLETE" in (ROOT / "completions" / "powertools.fish").read_text()


def _complete(words: str, cword: int) -> list[str]:
    """What the installed console script offers when bash asks it to complete."""
    env = process_env(
        {"COMP_WORDS": words, "COMP_CWORD": str(cword), "_POWERTOOLS_COMPLETE": "complete_bash"}
    )
    proc = subprocess.run(
        [str(console_script())], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split()


def test_dynamic_completion_answers_through_the_console_script() -> None:
    top = _complete("powertools ", 1)
    assert {"install", "db"} <= set(top)
    assert set(_complete("powertools db s", 2)) == {"status", "start", "stop"}
    assert "--dry-run" in _complete("powertools install --d", 2)


def test_bash_completion_file_drives_the_console_script() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    script = (
        f"source {ROOT / 'completions' / 'powertools.bash'}; "
        "COMP_WORDS=(powertools ins); COMP_CWORD=1; _powertools_completion powertools; "
        'echo "${COMPREPLY[@]}"'
    )
    env = process_env({"PATH": f"{console_script().parent}:{process_env()['PATH']}"})
    proc = subprocess.run(
        [bash, "-c", script], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert proc.stdout.split() == ["install"], proc.stdout + proc.stderr
