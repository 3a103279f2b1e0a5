"""The tiny DAG on a real SLURM cluster (single node on loopback) gives the local metrics.

`tools/slurm-local.sh up` installs and starts SLURM (root and apt needed). Where it cannot,
the test is skipped with the reason, except in CI (CI=true), where it must run.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml
from dagtools import TINY, snakemake


def slurm_is_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return state.returncode == 0 and state.stdout.strip() in ("idle", "mixed", "allocated")


def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"SLURM must run in CI but: {reason}")
    pytest.skip(f"no SLURM here: {reason}")


@pytest.fixture(scope="module")
def slurm(request):
    root = request.config.rootpath
    if slurm_is_up():
        yield
        return
    if os.geteuid() != 0:
        unavailable("tools/slurm-local.sh needs root (apt-get, daemons)")
    up = subprocess.run(
        ["bash", str(root / "tools/slurm-local.sh"), "up"],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    if up.returncode != 0 or not slurm_is_up():
        unavailable(f"tools/slurm-local.sh up failed:\n{up.stdout[-2000:]}\n{up.stderr[-2000:]}")
    yield
    subprocess.run(["bash", str(root / "tools/slurm-local.sh"), "down"], timeout=300)


def test_slurm_profile_gives_the_local_metrics(slurm, run, tmp_path):
    local, root = run
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    done = snakemake(
        tmp_path,
        root,
        "--profile",
        str(root / "workflow/profiles/slurm"),
        "--slurm-status-command",
        "squeue",  # no slurmdbd here, so no sacct
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "2",
        "results/report.html",
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    assert "has been submitted with SLURM jobid" in out  # sbatch ran the jobs, not this process
    metrics = sorted(p.name for p in (local / "results/metrics").glob("*.json"))
    assert metrics and metrics == sorted(
        p.name for p in (tmp_path / "results/metrics").glob("*.json")
    )
    for name in metrics:
        assert (tmp_path / "results/metrics" / name).read_bytes() == (
            local / "results/metrics" / name
        ).read_bytes(), name
