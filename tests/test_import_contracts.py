"""The import contracts in `.importlinter` hold (issue 27, item 4: layers enforced, not hoped for).

`lint-imports` runs as CI would run it, in a subprocess from the repository root (under a second, so it
sits in the default run). A second test shows the check can fail at all: a contract that forbids an import
the package does make must be reported broken, or a passing run would prove nothing.
"""

from __future__ import annotations

import configparser
import importlib.util
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / ".importlinter"


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    """`lint-imports` (installed by the dev extra) from the repository root, without its cache folder."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]' (scripts/setup.sh does)")
    return subprocess.run([exe, "--no-cache", "--no-logo", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_the_import_contracts_hold():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_contract_the_code_breaks_is_reported(tmp_path):
    """assets/ imports core (the pipeline): a contract forbidding that must fail, naming the contract."""
    contract = tmp_path / "broken.ini"
    contract.write_text("[importlinter]\nroot_package = greenai_dagster\n\n"
                        "[importlinter:contract:assets-without-core]\nname = assets never import core\n"
                        "type = forbidden\nsource_modules =\n    greenai_dagster.assets\n"
                        "forbidden_modules =\n    greenai_dagster.core\n")
    result = lint_imports(str(contract))
    assert result.returncode != 0, result.stdout
    assert "assets never import core BROKEN" in result.stdout


def test_every_installed_dagster_package_is_forbidden_in_core():
    """The Dagster contract lists packages by name (import-linter has no `dagster_*`): a dagster library
    installed later (dagster-dbt, say) must be added to it, or core could import it unnoticed."""
    config = configparser.ConfigParser()
    config.read(CONTRACTS)
    forbidden = set(config["importlinter:contract:core-no-dagster"]["forbidden_modules"].split())
    installed = {m.name for m in pkgutil.iter_modules() if m.name == "dagster" or m.name.startswith("dagster_")}
    assert "dagster" in installed
    assert installed <= forbidden, f"add to .importlinter's core-no-dagster contract: {sorted(installed - forbidden)}"


def _import_stats():
    """scripts/import_stats.py, the script that reports the figures, loaded as a module (it is not a package)."""
    spec = importlib.util.spec_from_file_location("import_stats", REPO / "scripts" / "import_stats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycles():
    """No two modules of the package reach each other through imports, at module or function level (grimp
    reads every import statement, as import-linter does). A circle means neither module can be read, tested
    or moved without the other; the layers above hold only while there is none (issue 27, item 4)."""
    graph = grimp.build_graph("greenai_dagster", cache_dir=None)
    edges = {m: {d for d in graph.find_modules_directly_imported_by(m)} for m in graph.modules}
    circles = [c for c in _import_stats().strongly_connected(edges) if len(c) > 1]
    described = []
    for circle in circles:   # one concrete loop per circle: its first module, out and back
        out = graph.find_shortest_chain(importer=circle[0], imported=circle[1]) or ()
        back = graph.find_shortest_chain(importer=circle[1], imported=circle[0]) or ()
        described.append(f"{len(circle)} modules {circle}; e.g. {' -> '.join(out)} -> {' -> '.join(back[1:])}")
    assert not circles, "import cycles:\n" + "\n".join(described)


def test_import_stats_counts_what_grimp_sees():
    """scripts/import_stats.py (ast only, for the before/after figures) finds the same circles as the test
    above: none."""
    figures = _import_stats().stats()
    assert figures["module_and_function_level"]["cycles"] == 0, figures["module_and_function_level"]["sccs"]
    assert figures["module_level"]["cycles"] == 0, figures["module_level"]["sccs"]
