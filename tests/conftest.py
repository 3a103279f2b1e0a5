import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # dagtools
# Tests are small: keep torch and BLAS on one thread so runs are quick and reproducible.
os.environ.setdefault("OMP_NUM_THREADS", "1")


# `make test-fast` runs `pytest -m "not slow"`: no DAG run, no browser, no SLURM. A test is
# slow when it needs one of these fixtures (each runs the DAG or a whole project copy), lives
# in one of these files, or is marked by hand.
SLOW_FIXTURES = {"run", "regress_run", "corpus_run", "demo_root", "project", "placeholders"}
SLOW_FILES = {"test_browser.py", "test_slurm.py"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames) or item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def fer_onnx(tmp_path_factory):
    """The fer-minixception port exported to ONNX (pooled features, logits), batch dynamic."""
    import warnings

    import torch

    from pipeline.backbones.fer_minixception import FERMiniXception

    net = FERMiniXception(device="cpu").net
    path = tmp_path_factory.mktemp("onnx") / "fer.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes
        torch.onnx.export(
            net,
            (torch.zeros(1, 1, 64, 64),),
            str(path),
            input_names=["image"],
            output_names=["pooled", "logits"],
            dynamic_axes={"image": {0: "n"}, "pooled": {0: "n"}, "logits": {0: "n"}},
            dynamo=False,
        )
    return path
