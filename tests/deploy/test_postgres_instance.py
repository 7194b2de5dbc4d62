"""The Dagster instance on PostgreSQL (deploy/dagster.yaml): Debian's postgresql server is started on a
free 127.0.0.1 port in a temp dir, one Dagster run goes through an instance built from that file, and
the run, its events and a schedule-storage table are then read back from Postgres itself."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO



def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses root: run the server as Debian's `postgres` user when we are root."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


pytestmark = pytest.mark.skipif(_pg_bin("initdb") is None or _pg_bin("pg_ctl") is None,
                                reason="postgresql server not installed (scripts/setup.sh installs it)")


@pytest.fixture()
def postgres():
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server")
    folder = Path(tempfile.mkdtemp(prefix="greenai-pg-"))   # not under pytest's 0700 tmp: the server user reads it
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    user = "greenai"
    subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
                                 "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start"]), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)   # the server inherits them: no pipes
    try:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname="postgres")
        con.autocommit = True                      # CREATE DATABASE cannot run inside a transaction
        con.cursor().execute("CREATE DATABASE dagster")
        con.close()
        yield {"DAGSTER_PG_USERNAME": user, "DAGSTER_PG_PASSWORD": "trust-auth-unused", "DAGSTER_PG_HOST": "127.0.0.1",
               "DAGSTER_PG_DB": "dagster", "DAGSTER_PG_PORT": str(port)}
    finally:
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_run_on_the_postgres_instance_is_stored_in_postgres(postgres, tmp_path, monkeypatch):
    import psycopg2
    from dagster import DagsterInstance, execute_job, job, op, reconstructable  # noqa: F401
    from dagster._core.storage.dagster_run import DagsterRunStatus

    for key, value in postgres.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    instance = DagsterInstance.from_config(str(home))
    try:
        from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

        @op
        def measure() -> int:
            return 42

        @job
        def on_postgres():
            measure()

        result = on_postgres.execute_in_process(instance=instance)
        assert result.success and result.output_for_node("measure") == 42
        run_id = result.run_id
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
    finally:
        instance.dispose()
    with psycopg2.connect(host="127.0.0.1", port=int(postgres["DAGSTER_PG_PORT"]), user=postgres["DAGSTER_PG_USERNAME"],
                          dbname="dagster") as con:
        cur = con.cursor()
        cur.execute("SELECT pipeline_name, status FROM runs WHERE run_id = %s", (run_id,))
        assert cur.fetchall() == [("on_postgres", "SUCCESS")]
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'STEP_SUCCESS'",
                    (run_id,))
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT to_regclass('public.jobs'), to_regclass('public.job_ticks')")   # schedule storage
        assert all(cur.fetchone())
