"""README figures are read from committed results files (benchmarks/readme_figures.py): the check passes on
the README as committed, and fails, naming the figure, when one figure is altered."""

import subprocess
import sys

from tests.conftest import REPO

ROOT = REPO
SCRIPT = ROOT / "benchmarks" / "readme_figures.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_every_registered_readme_figure_agrees_with_its_results_file():
    done = run("--check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 disagree" in done.stdout


def test_an_altered_figure_fails_the_check_and_is_named(tmp_path):
    text = (ROOT / "README.md").read_text()
    old = "**495 s for the 3 episodes"
    assert text.count(old) == 1
    readme = tmp_path / "README.md"
    readme.write_text(text.replace(old, "**431 s for the 3 episodes"))
    done = run("--check", "--readme", str(readme))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "431 s for the 3 episodes" in done.stdout            # the README text
    assert "first_command.json" in done.stdout and "split_s.total" in done.stdout   # file and JSON path
    assert "file's value: 495" in done.stdout
    assert "1 disagree" in done.stdout


def test_a_table_cell_and_a_derived_ratio_are_checked(tmp_path):
    text = (ROOT / "README.md").read_text()
    old = "| 10.7 | 1.57 | 0.147 |"                                  # the first command's GPTQ W4 row
    assert text.count(old) == 1
    readme = tmp_path / "README.md"
    readme.write_text(text.replace(old, "| 10.7 | 1.8 | 0.147 |"))
    done = run("--check", "--readme", str(readme))
    assert done.returncode == 1
    assert "x faster" in done.stdout or "{baseline.latency_ms} / {" in done.stdout
    assert "file's value: 1.572" in done.stdout


def test_list_prints_every_figure_with_its_source():
    done = run("--list")
    assert done.returncode == 0
    assert "first_command.json: split_s.total" in done.stdout
    assert "(not found)" not in done.stdout and "unreadable" not in done.stdout
