"""Helpers of the end-to-end tests: the tiny config and running Snakemake in a folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

TINY = {
    "demo": {
        "subjects": 4,
        "repetitions": 1,
        "min_frames": 18,
        "max_frames": 30,
        "width": 160,
        "height": 120,
    },
    "shards": 2,
    "face": {"min_face_size": 20},
    # the demo (make report) covers similarity alignment; the tests cover the 3D path
    "frontalize": {"method": "hassner", "symmetry": "soft"},
    "cv": {"k": 2},
    "backbones": {
        "hog": {"size": 48, "cell": 8},
        "pixels": {"size": 24},
        "resnet-attention": {"size": 32, "width": 4, "epochs": 2, "frames_per_video": 4},
        "geometry": {},
        "blendshapes": {},  # MediaPipe's, exported per frame
    },
    "models": {
        "gru": {
            "epochs": 3,
            "lr": 0.001,
            "hidden": 16,
            "proj": 32,
            "backbones": ["hog", "resnet-attention"],
        },
        "c3d": {"epochs": 2, "lr": 0.003, "width": 4, "blocks": 2, "grid": 2},
        "meanpool": {"backbones": ["hog", "pixels"]},
        # the real-data additions: landmark geometry, fused, person-calibrated
        "statspool": {"backbones": ["geometry", "geometry+hog", "blendshapes+geometry"]},
        "statspool@calibrated": {"backbones": ["geometry"], "normalize": "calibrated"},
    },
    # accuracy against the number of training people, on one result
    "curve": {"subjects": [1, 2], "samples": 2, "models": ["statspool/geometry"]},
}


def snakemake(workdir: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(root / "Snakefile"),
        "--directory",
        str(workdir),
    ]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=1200)


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The rule → job count table that `snakemake -n` prints."""
    counts = {}
    table = dry_run_output.split("Job stats:", 1)[1] if "Job stats:" in dry_run_output else ""
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    counts.pop("total", None)
    return counts
