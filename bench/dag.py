"""Benchmark of the DAG itself: planning 20,000 videos, and a no-op rerun of the demo.

    .venv/bin/python bench/dag.py [--videos 20000] [--shards 64] [--probe-videos 2000] [--real DIR]

1. A generated label sheet of `--videos` videos (1,000 subjects, 7 labels; the files need
   not exist for planning) in a temporary folder, with the demo's config, `shards` set to
   `--shards` and 10 folds: `snakemake -n results/report.html`. Printed: seconds and the job
   count by rule. Target: < 30 s. Per-video work is grouped in shards, so the job count does
   not grow with the number of videos (the same plan is made for 120 videos as a baseline).
2. `snakemake --cores 8 results/report.html` in the repository when the demo is complete
   (after `make report`): a no-op rerun. Target: < 5 s.
3. Probing: the `dataset` stage (`python -m pipeline.datasets.sheet`, which validates the sheet
   and decodes every video to count its frames) on `--probe-videos` short generated videos
   (48 frames, 160×120), with one thread and with one per core: wall time, and the cost per
   video beyond a one-video run (the process and its imports). `--real DIR` times it on a folder of real videos too (e.g. ../shared/data/j-dev).
4. The audit: what the content fingerprint adds to probing (`probe` with and without it on
   the same videos, in turn, 3 rounds, one process, medians), and the `audit` stage
   (`python -m pipeline.datasets.audit run`) on the probed table of part 3 and on a table of
   `--videos` rows (7 labels, 1,000 subjects, 1 % duplicated content), against the dataset
   stage's time on the same videos.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dagtools import job_counts  # noqa: E402 (the parser of `snakemake -n` the tests use)

LABELS = ["anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"]


def snakemake(workdir: Path, *args: str) -> tuple[float, str, int]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    t0 = time.perf_counter()
    done = subprocess.run(
        [*cmd, "--directory", str(workdir), *args], capture_output=True, text=True
    )
    return time.perf_counter() - t0, done.stdout + done.stderr, done.returncode


def plan(videos: int, shards: int) -> tuple[float, dict[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with open(tmp / "sheet.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "subject", "label"])
            for i in range(videos):
                subject = f"s{i % 1000:04d}"
                writer.writerow([f"videos/{subject}/clip_{i:06d}.mp4", subject, LABELS[i % 7]])
        config = yaml.safe_load((ROOT / "config.yaml").read_text())
        config["dataset"]["sheet"] = str(tmp / "sheet.csv")
        config["shards"] = shards
        config["cv"]["k"] = 10
        (tmp / "config.yaml").write_text(yaml.safe_dump(config))
        seconds, out, rc = snakemake(tmp, "-n", "--quiet", "rules", "--", "results/report.html")
        if rc != 0:
            raise SystemExit(f"snakemake -n failed:\n{out[-3000:]}")
        return seconds, job_counts(out)


def probe_stage(root: Path, names: list[str], threads: int, tmp: Path) -> float:
    """Wall time of the dataset stage, as its rule runs it, on a sheet of `names` in `root`."""
    sheet = tmp / "probe-sheet.csv"
    with open(sheet, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "subject", "label"])
        for i, name in enumerate(names):
            writer.writerow([name, f"s{i % 50:02d}", LABELS[i % 7]])
    cmd = [sys.executable, "-m", "pipeline.datasets.sheet", "--sheet", str(sheet)]
    cmd += ["--out", str(tmp / "videos.csv"), "--skipped", str(tmp / "skipped.csv")]
    cmd += ["--params", json.dumps({"root": str(root)}), "--threads", str(threads)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"the dataset stage failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def probing(n: int, real: str | None, n_rows: int) -> None:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from pipeline.encode import write_video

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "videos").mkdir()
        ramp = np.linspace(0, 255, 160, dtype=np.float32)
        names = []
        for i in range(n):
            frames = (
                np.broadcast_to(
                    ((ramp + 5 * t + i) % 256).astype(np.uint8)[None, :, None], (120, 160, 3)
                )
                for t in range(48)
            )
            write_video(tmp / "videos" / f"v{i:05d}.mp4", frames, fps=30)
            names.append(f"v{i:05d}.mp4")
        sets = [(f"{n} generated videos (48 frames, 160x120)", tmp / "videos", names)]
        if real:
            root = Path(real).resolve()
            found = sorted(str(p.relative_to(root)) for p in root.rglob("*.mp4"))
            sets.append((f"{len(found)} videos of {real}", root, found))
        timed = []
        for name, root, files in sets:
            start = probe_stage(root, files[:1], 1, tmp)  # the process, its imports, one video
            one = probe_stage(root, files, 1, tmp)
            many = probe_stage(root, files, cores, tmp)
            per_video = (one - start) / max(1, len(files) - 1)
            print(
                f"dataset stage on {name}: {one:.1f} s with 1 thread, {many:.1f} s with {cores} "
                f"({one / many:.2f}x); {1000 * per_video:.1f} ms per video beyond the "
                f"{start:.1f} s of a one-video run"
            )
            timed.append((name, root, files, one))
        auditing(timed, n_rows, tmp)


def fingerprint_cost(root: Path, files: list[str], rounds: int = 3) -> tuple[float, float, list]:
    """Seconds to probe `files` without and with the content fingerprint (medians over
    `rounds`, and each round's ratio), after a warm-up pass. Each video is probed both ways
    back to back, the order alternating, so that the machine's drift hits both sides alike."""
    from pipeline.video import probe

    for name in files[:10]:
        probe(root / name), probe(root / name, fingerprint=True)
    totals = []
    for r in range(rounds):
        spent = {False: 0.0, True: 0.0}
        for i, name in enumerate(files):
            for marks in (False, True) if (i + r) % 2 else (True, False):
                t0 = time.perf_counter()
                probe(root / name, fingerprint=marks)
                spent[marks] += time.perf_counter() - t0
        totals.append((spent[False], spent[True]))
    plain, marked = (sorted(t[k] for t in totals)[rounds // 2] for k in (0, 1))
    return plain, marked, [m / p for p, m in totals]


def audit_stage(table: Path, tmp: Path) -> float:
    params = {"cv": {"method": "kfold", "k": 10}, "clip_length": 16}
    cmd = [sys.executable, "-m", "pipeline.datasets.audit", "run", "--videos", str(table)]
    cmd += ["--out-videos", str(tmp / "audited.csv"), "--out", str(tmp / "audit.csv")]
    t0 = time.perf_counter()
    done = subprocess.run([*cmd, "--params", json.dumps(params)], capture_output=True, text=True,
                          cwd=ROOT)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"the audit stage failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def auditing(sets: list, n_rows: int, tmp: Path) -> None:
    import numpy as np
    import pandas as pd

    for name, root, files, _ in sets:
        plain, marked, ratios = fingerprint_cost(root, files)
        print(f"fingerprint on {name}: probing {plain:.2f} s without, {marked:.2f} s with "
              f"({marked / plain:.2f}x, rounds {', '.join(f'{x:.2f}' for x in ratios)}; "
              f"{1000 * (marked - plain) / len(files):.2f} ms a video)")  # fmt: skip
    probed = tmp / "videos.csv"  # part 3's last table, as the dataset stage wrote it
    seconds = audit_stage(probed, tmp)
    stage_s = sets[-1][3]
    print(f"audit stage on the last probed table ({len(pd.read_csv(probed))} videos): "
          f"{seconds:.2f} s, {seconds / stage_s:.2f}x the dataset stage's {stage_s:.1f} s")  # fmt: skip
    rng = np.random.default_rng(0)
    content = [f"{i:032x}" for i in range(n_rows)]
    for i in rng.choice(n_rows, n_rows // 100, replace=False):
        content[i] = content[(i + 1) % n_rows]  # 1 %: the same content twice
    table = pd.DataFrame({
        "video_id": [f"v{i:06d}" for i in range(n_rows)],
        "path": [f"/data/v{i:06d}.mp4" for i in range(n_rows)],
        "subject": [f"s{i % 1000:04d}" for i in range(n_rows)],
        "label": [LABELS[i % 7] for i in range(n_rows)],
        "fps": 30.0, "n_frames": rng.integers(8, 300, n_rows), "width": 640, "height": 480,
        "line": range(2, n_rows + 2), "link": "", "content": content,
    })  # fmt: skip
    table.to_csv(tmp / "big.csv", index=False)
    seconds = audit_stage(tmp / "big.csv", tmp)
    found = pd.read_csv(tmp / "audit.csv")
    print(f"audit stage on {n_rows} rows: {seconds:.2f} s ({len(found)} findings: "
          f"{ {k: int(v) for k, v in found.check.value_counts().items()} })")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=20000)
    ap.add_argument("--shards", type=int, default=64)
    ap.add_argument("--probe-videos", type=int, default=2000, help="0: skip the probe part")
    ap.add_argument("--real", help="a folder of real videos to probe too")
    args = ap.parse_args()

    base_s, base_jobs = plan(120, args.shards)
    big_s, big_jobs = plan(args.videos, args.shards)
    print(f"dry run, {args.shards} shards, 10 folds, the demo's models and backbones:")
    print(f"  {120:>6} videos: {base_s:5.1f} s, {sum(base_jobs.values())} jobs")
    print(
        f"  {args.videos:>6} videos: {big_s:5.1f} s, {sum(big_jobs.values())} jobs (target < 30 s)"
    )
    print(f"  ratio {big_s / base_s:.2f}; jobs by rule: {big_jobs}")

    if (ROOT / "results/report.html").exists():
        seconds, out, rc = snakemake(ROOT, "--cores", "8", "results/report.html")
        state = "nothing to do" if "Nothing to be done" in out else "RAN JOBS"
        print(f"no-op rerun of the demo: {seconds:.1f} s ({state}; target < 5 s)")
    else:
        print("no-op rerun of the demo: skipped, run `make report` first")
    if args.probe_videos > 0:
        probing(args.probe_videos, args.real, args.videos)


if __name__ == "__main__":
    main()
