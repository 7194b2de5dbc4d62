"""The import contracts in `.importlinter` hold (issue 27, item 4: layers enforced, not hoped for).

`lint-imports` runs as CI would run it, in a subprocess from the repository root (under a second, so it
sits in the default run). A second test shows the check can fail at all: a contract that forbids an import
the package does make must be reported broken, or a passing run would prove nothing.
"""

from __future__ import annotations

import configparser
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

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
