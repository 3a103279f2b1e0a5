"""Every command of the ```bash blocks of README and the documentation (docs/) runs as written.

`make` targets are dry-run (`make -n`: `make report` and `make test` are what a newcomer and
CI run anyway); Snakemake commands are dry-run (`-n`) in a copy of the project, in a shell that
has sourced the environment as the pages tell a user to (a bare `snakemake` is not on PATH
without it), where the data
paths a reader replaces (`/data/mine/sheet.csv`, …) point at small generated data; the
prediction command runs for real on a model of the tiny end-to-end run. A new command or a new
placeholder path fails this test until it is taught here how to run it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def bash_commands(text: str) -> list[tuple[int, str]]:
    """(line, command) for every command of the ```bash blocks: continuation lines joined,
    comment lines dropped (trailing comments are dropped by shlex later)."""
    out, block, start, pending = [], None, 0, ""
    for no, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            block = None if block is not None else line[3:].strip()
            continue
        if block != "bash":
            continue
        if not pending:
            start = no
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = [
    (f"{page.relative_to(ROOT)}:{line}", command)
    for page in PAGES
    for line, command in bash_commands(page.read_text(encoding="utf-8"))
]


def ids(commands) -> list[str]:
    return [where.replace("/", "-").replace(".md:", "-line") for where, _ in commands]


def test_the_docs_have_the_commands_this_test_knows():
    words = {shlex.split(c, comments=True)[0] for _, c in COMMANDS}
    assert words == {"make", "snakemake", ".venv/bin/python"}, words
    assert len(COMMANDS) >= 10  # the blocks were found (a renamed fence would hide them)
    readme = [where for where, _ in COMMANDS if where.startswith("README.md")]
    assert len(readme) >= 4, readme  # the two commands, your own data, predict


def test_the_readme_is_short_and_links_every_page_of_the_docs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    linked = set(re.findall(r"\(docs/([\w-]+\.md)", text))
    assert linked == pages, pages ^ linked
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert all(f": {page}" in nav for page in pages), "a page missing from mkdocs.yml's nav"


def tiny_video(path: Path, seed: int) -> None:
    from pipeline.datasets import demo
    from pipeline.encode import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    write_video(path, demo.render_subject(seed % 2, "anger", 4, (96, 72), rng), fps=25)


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory) -> dict[str, str]:
    """The data paths README's commands use, each made real: a sheet, a CK+ tree."""
    from PIL import Image

    data = tmp_path_factory.mktemp("readme-data")
    for i in range(2):
        tiny_video(data / "mine" / f"p{i}.mp4", i)
    sheet = data / "mine" / "sheet.csv"
    sheet.write_text("path,subject,label\np0.mp4,a,anger\np1.mp4,b,joy\n")
    ck = data / "CK+"
    seq = ck / "cohn-kanade-images" / "S005" / "001"
    seq.mkdir(parents=True)
    for i in range(1, 4):
        image = Image.fromarray(np.full((16, 16, 3), 20 * i, np.uint8))
        image.save(seq / f"S005_001_{i:08d}.png")
    emotion = ck / "Emotion" / "S005" / "001" / "S005_001_00000003_emotion.txt"
    emotion.parent.mkdir(parents=True)
    emotion.write_text("   3.0000000e+00\n")
    return {"/data/mine/sheet.csv": str(sheet), "/path/to/j-dev/sheet.csv": str(sheet),
            "/data/CK+": str(ck)}  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project's files (what git tracks or would add), no results."""
    copy = tmp_path_factory.mktemp("readme-project")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file() and not source.is_relative_to(ROOT / "results"):
            (copy / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name.decode())
    return copy


def substituted(command: str, placeholders: dict[str, str]) -> list[str]:
    for written, real in placeholders.items():
        command = command.replace(written, real)
    args = shlex.split(command, comments=True)
    unknown = [a for a in args if a.startswith(("/data", "/path")) or "/data/" in a]
    assert not unknown, f"placeholder paths this test cannot fill: {unknown}"
    return args


SNAKEMAKE = [(n, c) for n, c in COMMANDS if c.startswith("snakemake")]
MAKE = [(n, c) for n, c in COMMANDS if c.startswith("make")]
PYTHON = [(n, c) for n, c in COMMANDS if c.startswith(".venv/bin/python")]


@pytest.mark.parametrize("line,command", MAKE, ids=ids(MAKE))
def test_make_commands_exist(line, command):
    target = shlex.split(command, comments=True)[1:]
    done = subprocess.run(["make", "-n", *target], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"{line}: {command}\n{done.stderr}"


# How README and the docs' first page tell a user to get `snakemake` after `make report`.
ACTIVATE = "source .venv/bin/activate"


def test_the_pages_say_how_to_get_the_environment():
    for page in ("README.md", "docs/index.md"):
        assert ACTIVATE in (ROOT / page).read_text(encoding="utf-8"), page


@pytest.mark.parametrize("line,command", SNAKEMAKE, ids=ids(SNAKEMAKE))
def test_snakemake_commands_plan_as_written(line, command, project, placeholders):
    """In a shell as a user has it after `make report`: the project's .venv exists but is not
    on PATH until the shell sources its activate script, as the pages say."""
    args = substituted(command, placeholders)
    venv = project / ".venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.executable).parents[1])
    bin_dir = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    dry = shlex.join([args[0], "-n", *args[1:]])
    done = subprocess.run(
        ["bash", "-c", f"{ACTIVATE} && {dry}"],
        cwd=project,
        env={**env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{line}: {command}\n{output[-3000:]}"
    assert "This was a dry-run" in output, output[-3000:]


INSPECT = [(n, c) for n, c in PYTHON if "-m pipeline.backbones.onnx" in c]
EXPORT = [(n, c) for n, c in PYTHON if "-m pipeline.export" in c]
STREAM = [(n, c) for n, c in PYTHON if "-m pipeline.predict.stream" in c]
PYTHON = [(n, c) for n, c in PYTHON if (n, c) not in INSPECT + EXPORT + STREAM]


@pytest.mark.parametrize("line,command", STREAM, ids=ids(STREAM))
def test_stream_commands_run_on_the_tiny_run(line, command, run, tmp_path):
    """A camera index is replaced by one of the tiny run's videos (no camera here)."""
    workdir, _ = run
    args = substituted(command, {})
    assert args[3].isdigit(), f"{line}: teach this test the source {args[3]}"
    args[3] = "data/demo/videos/s01_anger_1.mp4"
    out = tmp_path / "live.csv"
    args = [a if a != args[args.index("--out") + 1] else str(out) for a in args]
    done = subprocess.run(
        [sys.executable, *args[1:]], cwd=workdir, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{line}: {command}\n{done.stderr[-3000:]}"
    assert (
        out.read_text().startswith("frame,time_s,face,") and len(out.read_text().splitlines()) > 10
    )


@pytest.mark.parametrize("line,command", EXPORT, ids=ids(EXPORT))
def test_export_commands_run_on_the_tiny_run(line, command, run, tmp_path):
    workdir, _ = run
    args = substituted(command, {})
    out = tmp_path / "frames"
    args = [a if a != args[args.index("--out") + 1] else str(out) for a in args]
    done = subprocess.run(
        [sys.executable, *args[1:]], cwd=workdir, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{line}: {command}\n{done.stderr[-3000:]}"
    assert (out / "index.csv").is_file() and len(list(out.glob("*.csv"))) > 1


@pytest.mark.parametrize("line,command", INSPECT, ids=ids(INSPECT))
def test_onnx_inspection_lists_a_models_names(line, command, fer_onnx):
    """The placeholder model is the fer-minixception port exported to ONNX."""
    args = shlex.split(command, comments=True)
    assert args[-1].startswith("/path/to/") and args[-1].endswith(".onnx"), args
    args = substituted(command, {args[-1]: str(fer_onnx)})
    done = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, f"{line}: {command}\n{done.stderr[-3000:]}"
    assert "input 'image': shape ['n', 1, 64, 64]" in done.stdout, done.stdout
    assert "output 'logits': shape ['n', 7]" in done.stdout, done.stdout


@pytest.mark.parametrize("line,command", PYTHON, ids=ids(PYTHON))
def test_python_commands_run_on_the_tiny_run(line, command, run, placeholders, tmp_path):
    workdir, _ = run
    args = substituted(command, placeholders)
    assert args[1:3] == ["-m", "pipeline.predict"], f"{line}: teach this test {args}"
    video = workdir / args[3]
    assert video.exists(), f"{line}: the tiny run has no {args[3]}"
    out = tmp_path / "out"
    args = [a if a != args[args.index("--out") + 1] else str(out) for a in args]
    done = subprocess.run(
        [sys.executable, *args[1:]], cwd=workdir, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{line}: {command}\n{done.stderr[-3000:]}"
    assert any(out.iterdir())
