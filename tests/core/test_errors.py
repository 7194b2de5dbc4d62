"""The project's errors (core/errors.py): E000 is only the documented unexpected error, every remedy points
at a README section that exists, and an error recorded by a step comes back as its own class."""

from __future__ import annotations

from tests.conftest import REPO

ROOT = REPO


def test_e000_is_only_the_documented_unexpected_error_and_remedies_point_at_real_things():
    import re

    from greenai_dagster.core import errors

    package = ROOT / "greenai_dagster"
    sources = {p: p.read_text() for p in package.rglob("*.py")}
    assert not [p.name for p, t in sources.items() if re.search(r"raise GreenAIError\(|return GreenAIError\(", t)]
    readme = (ROOT / "README.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"^#+ (.+)$", readme, re.MULTILINE)}
    for path, text in sources.items():
        assert "coordinator.api_key" not in text, path
        for section in re.findall(r"README(?:'s)? ['\"]([^'\"]+)['\"]", text):
            assert any(h.startswith(section.lower()) for h in headings), (path.name, section)
    assert "`E000`" in readme and "troubleshooting" not in errors.GreenAIError.default_remedy.lower()
    # a step's error leaves its Dagster run as data (assets/_errors.py) and comes back as its own class
    error = errors.from_record(errors.UnexpectedError("ZeroDivisionError: division by zero").record())
    assert isinstance(error, errors.UnexpectedError) and error.code == "E000" and "Dagster UI" in error.remedy
    rebuilt = errors.from_record(errors.CompressionFailed("bad group size.", "use 64").record())
    assert type(rebuilt) is errors.CompressionFailed and (rebuilt.message, rebuilt.remedy) == ("bad group size.",
                                                                                               "use 64")
    unknown_class = errors.from_record({"code": "E005", "error_class": "GoneSince", "message": "m"})
    assert type(unknown_class) is errors.CompressionFailed          # a class not loaded here: the class of its code
    assert "coordinator.api_key" not in errors.CoordinatorKeyMissing.default_remedy
