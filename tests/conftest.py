import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # dagtools
# Tests are small: keep torch and BLAS on one thread so runs are quick and reproducible.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """The whole DAG on the TINY config, run once per session with --cores 2: (workdir, root)."""
    import yaml
    from dagtools import TINY, snakemake

    workdir = tmp_path_factory.mktemp("dag")
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))
    done = snakemake(workdir, ROOT, "--cores", "2", "results/report.html")
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir, ROOT
