"""Safety by construction, checked on the source: nothing a dataset or config contains is
executed or unpickled, and every path reaches the shell quoted."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sorted(
    p
    for folder in ("pipeline", "tests", "bench", "workflow")
    for p in (ROOT / folder).rglob("*.py")
)
RULES = sorted((ROOT / "workflow/rules").glob("*.smk"))

# Shell placeholders that may go unquoted, each a value that cannot hold a space or a quote.
UNQUOTED_OK = {
    "threads": "an integer",
    "wildcards.model": "wildcard_constraints: a catalog name",
    "wildcards.backbone": "wildcard_constraints: a catalog name",
    "wildcards.fold": r"wildcard_constraints: \d+",
    "wildcards.shard": r"wildcard_constraints: \d+",
    "params.on_error": "schema enum skip|fail",
    "params.normalize": "schema enum none|per_subject",
    "params.format": "schema enum of dataset formats",
    "params.task": "schema enum classify|regress; the train rule's: plan.task_arguments, fixed flags and the schema enum mse|ccc",
    "params.loss": "schema enum mse|ccc",
    "params.shards": "schema integer",
    "params.seed": "schema integer",
    "params.length": "schema integer",
    "params.split": "shlex.quote'd by plan.split_arguments",
    "params.outputs": "shlex.quote'd by train_output_arguments (common.smk)",
    "params.onthefly": "shlex.join'd by onthefly_argument (common.smk)",
}


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def name_of(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return f"{name_of(func.value)}.{func.attr}"
    return ""


@pytest.mark.parametrize("path", PYTHON, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_eval_exec_pickle_or_unsafe_loads(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for call in calls(tree):
        name = name_of(call.func)
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        assert name not in ("eval", "exec", "compile", "__import__"), f"{where}: {name}()"
        assert not name.startswith(("pickle.", "marshal.", "shelve.")), f"{where}: {name}"
        assert name not in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"), (
            f"{where}: {name}; use yaml.safe_load"
        )
        if name == "torch.load":
            kw = {k.arg: k.value for k in call.keywords}
            assert (
                isinstance(kw.get("weights_only"), ast.Constant)
                and kw["weights_only"].value is True
            ), f"{where}: torch.load without weights_only=True"
        if name.startswith("subprocess."):
            kw = {k.arg: k.value for k in call.keywords}
            shell = kw.get("shell")
            assert not (isinstance(shell, ast.Constant) and shell.value), f"{where}: shell=True"


def test_every_path_reaches_the_shell_quoted():
    seen = set()
    for path in RULES:
        for match in re.finditer(r"\{((?:input|output|log|params|wildcards|threads)[^}:]*)(:q)?\}",
                                 path.read_text()):  # fmt: skip
            name, quoted = match.group(1), match.group(2)
            seen.add(name)
            if not quoted:
                assert name in UNQUOTED_OK, f"{path.name}: {{{name}}} reaches the shell unquoted"
    assert "input.aligned" in seen and "log" in seen  # the scan sees the rules


def test_the_interpreter_path_is_quoted_too():
    from pipeline import plan

    common = (ROOT / "workflow/rules/common.smk").read_text()
    assert "PY = plan.interpreter(config, sys.executable)" in common
    assert plan.interpreter({"portable": False}, "/a b/python;rm") == "'/a b/python;rm'"
    assert plan.interpreter({"portable": True}, "/a b/python").endswith(" '/a b/python'")
