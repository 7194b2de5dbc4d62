"""The tests, arranged as the package is: the tests of `greenai_dagster/X/Y.py` are in `tests/X/test_Y.py`.

- `core/models/`, `core/formats/`, `core/methods/`, `core/runtimes/`, `core/data/`, `core/evaluation/`,
  `core/search/` (with `coordinator/`), `core/storage/`, `core/settings/`, `core/machine/`,
  `core/reporting/`: one folder per package of `greenai_dagster/core/`;
- `core/`: the modules that tie them together (engine, decide, experiment, pipeline, errors, export, selftest);
- `dagster/`: the Dagster layer (assets, jobs, sensor, runner, resources, partitions, Celery);
- `api/`, `cli/`, `ui/` (the Dagster UI in a browser): the entry points as a user meets them;
- `deploy/`: the PostgreSQL instance and the Kubernetes files under `deploy/`;
- `benchmarks/`: the committed results files and the README figures read from them;
- `architecture/`: the import contracts of `.importlinter`;
- `robustness/`: properties of the whole product: security, fuzzed inputs, killed runs, out of memory.

Every folder is a package, so `conftest.py` (fixtures for all of them, and `REPO`, the repository root) is
`tests.conftest`, and a test module shares helpers by its full name (`from tests.api.test_api import ...`).
"""
