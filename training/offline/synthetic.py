"""An offline bug-detection dataset made from real code on this machine: functions of the Python
standard library, half of them with one injected operator bug, in the style of CuBERT's
synthetic tasks (wrong binary operator, swapped comparison, and/or swapped).

Label 1 = buggy. Both classes are re-printed by ast.unparse, so formatting cannot give the label
away; splits are made by source file, so no function (or its twin) crosses a split.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import sysconfig
from pathlib import Path

SWAPS = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult,
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
    ast.NotIn: ast.In, ast.And: ast.Or, ast.Or: ast.And,
}
MIN_LINES, MAX_LINES = 3, 30


def mutation_sites(function: ast.AST) -> list[tuple[ast.AST, str, int | None]]:
    """(node, attribute, index) of every operator that SWAPS can replace."""
    sites = []
    for node in ast.walk(function):
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAPS:
            sites.append((node, "op", None))
        elif isinstance(node, ast.BoolOp) and type(node.op) in SWAPS:
            sites.append((node, "op", None))
        elif isinstance(node, ast.Compare):
            sites.extend((node, "ops", i) for i, op in enumerate(node.ops) if type(op) in SWAPS)
    return sites


def inject_bug(function: ast.AST, rng: random.Random) -> bool:
    sites = mutation_sites(function)
    if not sites:
        return False
    node, attribute, index = rng.choice(sites)
    if index is None:
        setattr(node, attribute, SWAPS[type(getattr(node, attribute))]())
    else:
        node.ops[index] = SWAPS[type(node.ops[index])]()
    return True


def strip_docstring(function: ast.FunctionDef) -> None:
    body = function.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        function.body = body[1:]


def function_nodes(path: Path):
    """Every function definition of a file that parses (a few standard-library files do not)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    yield from (node for node in ast.walk(tree)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno)


def functions_of(path: Path):
    for node in function_nodes(path):
        if MIN_LINES <= node.end_lineno - node.lineno + 1 <= MAX_LINES and mutation_sites(node):
            yield node


def split_of(path: Path, stdlib: Path) -> str:
    bucket = int(hashlib.sha256(str(path.relative_to(stdlib)).encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def generate(out_dir: Path, max_examples: int = 3000, seed: int = 42, stdlib: Path | None = None) -> dict[str, int]:
    """Write {train,validation,test}.jsonl and dataset.json to out_dir; return rows per split."""
    stdlib = Path(stdlib or sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts and "test" not in p.parts)
    rng = random.Random(seed)
    rows = {"train": [], "validation": [], "test": []}
    seen = set()
    for path in files:
        for function in functions_of(path):
            strip_docstring(function)
            label = rng.random() < 0.5
            if label and not inject_bug(function, rng):
                continue
            code = ast.unparse(function)
            if code in seen:
                continue
            seen.add(code)
            rows[split_of(path, stdlib)].append({"code": code, "label": int(label),
                                                 "source": str(path.relative_to(stdlib))})
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, items in rows.items():
        rng.shuffle(items)
        share = {"train": 0.8, "validation": 0.1, "test": 0.1}[split]
        items = items[: max(1, int(max_examples * share))]
        with open(out_dir / f"{split}.jsonl", "w") as handle:
            handle.writelines(json.dumps(item) + "\n" for item in items)
        counts[split] = len(items)
    manifest = {"description": "stdlib-bug-detection: Python standard library functions, half with one "
                               "injected operator bug", "text_columns": ["code"], "label_column": "label",
                "positive_label": 1,
                "about": {"labels": {"0": "correct", "1": "one injected operator bug"}, "rows": counts,
                          "generated_from": str(stdlib), "seed": seed}}
    (out_dir / "dataset.json").write_text(json.dumps(manifest, indent=2))
    return counts
