"""SIGKILL in the middle of feature extraction, and again in the middle of training: after
`--unlock` and a rerun with `--rerun-incomplete`, the metrics are byte-identical to the
uninterrupted run's (the session's tiny DAG). This is also the two-full-runs determinism
check: the two runs happen in different folders, at different times, with different jobs
running side by side.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import yaml
from dagtools import TINY, snakemake

ROOT = Path(__file__).resolve().parents[2]


def start(workdir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(workdir), "--cores", "2", *extra, "results/report.html"]  # fmt: skip
    return subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the jobs too
    )


def kill_when(proc: subprocess.Popen, ready, timeout: float = 900) -> None:
    """SIGKILL Snakemake and all its jobs as soon as `ready()` is true."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before the moment to kill it"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def extracting(workdir: Path) -> bool:
    """A feature shard has saved some of its videos and is working on the next."""
    return any((workdir / "results/features").glob("*/shard-*.h5.parts/*.h5"))


def training(workdir: Path) -> bool:
    """A training job has finished an epoch and goes on."""
    return any("epoch 1:" in p.read_text() for p in (workdir / "logs").glob("train/*/*/fold*.log"))


def test_sigkill_during_features_and_training_then_rerun_gives_the_same_metrics(run, tmp_path):
    reference, _ = run
    workdir = tmp_path / "crash"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))

    kill_when(start(workdir), lambda: extracting(workdir))
    assert not (workdir / "results/metrics").exists()
    # a killed job leaves at most a hidden temporary file, never a half-written output:
    # every HDF5 file under its final name opens
    outputs = [p for p in (workdir / "results").rglob("*.h5") if not p.name.startswith(".")]
    assert any(p.parent.name.endswith(".parts") for p in outputs)  # resumable parts
    for path in outputs:
        with h5py.File(path, "r") as f:
            f.attrs.get("skipped")

    assert snakemake(workdir, ROOT, "--unlock").returncode == 0
    kill_when(start(workdir, "--rerun-incomplete"), lambda: training(workdir))
    assert not (workdir / "results/report.html").exists()

    assert snakemake(workdir, ROOT, "--unlock").returncode == 0
    done = snakemake(workdir, ROOT, "--rerun-incomplete", "--cores", "2", "results/report.html")
    assert done.returncode == 0, done.stderr[-3000:]
    leftovers = [p for p in (workdir / "results").rglob(".*.tmp*")]
    assert not leftovers, leftovers  # reruns removed what the killed jobs left
    names = sorted(p.name for p in (reference / "results/metrics").glob("*.json"))
    assert names == sorted(p.name for p in (workdir / "results/metrics").glob("*.json"))
    for name in names:
        assert (workdir / "results/metrics" / name).read_bytes() == (
            reference / "results/metrics" / name
        ).read_bytes(), name
