"""What the search tests start besides gantrain: a throwaway PostgreSQL cluster, and a pruner whose verdicts the tests
know in advance (which trials a median pruner stops depends on the tiny runs' noisy scores)."""

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna


class PruneOddFolders(optuna.pruners.BasePruner):
    """Prunes the trials of odd-numbered run folders (trial-0001, trial-0003, ...) at their evaluation of step 4: a
    retried trial keeps its folder, so its verdict does not depend on which worker asked it."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return (trial.last_step or 0) >= 4 and int(trial.user_attrs["run_folder"].removeprefix("trial-")) % 2 == 1


def postgres_bin() -> Path | None:
    """The folder of the newest PostgreSQL server's programs (Debian keeps them off PATH), or None."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "postgres").is_file()), None)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """A PostgreSQL server of its own (a new cluster in a fresh folder of the system's temporary directory, on a free
    port of 127.0.0.1, no fsync), stopped and deleted at the end; yields its SQLAlchemy URL. As root the server runs as
    the `postgres` user, which refuses root's private folders (pytest's tmp_path among them)."""
    programs = postgres_bin()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="gantrain-postgres-"))
    data = folder / "pgdata"
    if as_user:
        shutil.chown(folder, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def run(*argv: str) -> None:
        done = subprocess.run([*as_user, *argv], capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stdout}{done.stderr}")

    try:
        run(str(programs / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        run(str(programs / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
