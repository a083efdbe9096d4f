"""An offline clone-detection dataset in the default task's shape (`func1`, `func2`, `label`), made
from real code on this machine: functions of the Python standard library.

- Positives: a function and a semantics-preserving rewrite of it, of the clone types BigCloneBench
  grades: identifiers renamed, formatting and comments changed, independent statements reordered,
  constructs replaced by equivalent ones (`x += y` / `x = x + y`, an if/else with its test negated
  and its branches swapped, `a != b` / `not a == b`).
- Negatives: a function and a rewrite of a different function, about half of them hard: from the
  same module and of similar length. Both classes' second text goes through the same rewriting, so
  its form gives nothing away, and every function is in one pair of each label, so no function
  alone tells the label; only what the two do tells the pairs apart.
- Splits by source file: no function crosses splits.

Label 1 = clone.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import sysconfig
from pathlib import Path

from training.offline.rewrites import compiles, local_names, rewrite
from training.offline.synthetic import function_nodes, strip_docstring

MIN_LINES, MAX_LINES = 4, 14  # long enough to have a shape, short enough that a pair fits 128 tokens
GENERATOR = "training.offline.pairs 2"  # in dataset.json: a folder made by another version is made again


def functions_of(path: Path):
    for node in function_nodes(path):
        if isinstance(node, ast.FunctionDef):
            strip_docstring(node)
            lines = node.end_lineno - node.lineno + 1
            if MIN_LINES <= lines <= MAX_LINES and local_names(node)[1:] and compiles(ast.unparse(node)):
                yield node  # compiles on its own: not a closure over nonlocal names


def split_of(relative: str) -> str:
    bucket = int(hashlib.sha256(relative.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def collect(stdlib: Path) -> dict[str, list[tuple[str, ast.FunctionDef, str]]]:
    """(module, function, canonical code) per split, each function once."""
    files = sorted(p for p in stdlib.rglob("*.py")
                   if not {"site-packages", "test", "tests", "idlelib"} & set(p.parts))
    by_split, seen = {"train": [], "validation": [], "test": []}, set()
    for path in files:
        relative = str(path.relative_to(stdlib))
        for function in functions_of(path):
            code = ast.unparse(function)
            if code in seen:
                continue
            seen.add(code)
            by_split[split_of(relative)].append((relative, function, code))
    return by_split


def pairs_of(functions: list, count: int, rng: random.Random) -> list[dict]:
    """count pairs from count/2 anchor functions: each anchor once with a rewrite of itself (a clone)
    and once with a rewrite of another anchor (every other one hard where its module has another
    anchor: same module, similar length). Every
    anchor is in one pair of each label, as first text and as rewritten second text, so no function
    tells the label by itself: only the relation between the two does."""
    anchors = rng.sample(functions, min(count // 2, len(functions)))
    by_module: dict[str, list] = {}
    for entry in anchors:
        by_module.setdefault(entry[0], []).append(entry)
    rows = []
    for index, (module, function, code) in enumerate(anchors):
        rows.append({"func1": code, "func2": rewrite(function, rng), "label": 1, "kind": "clone",
                     "source1": module, "source2": module})
        same_module = [e for e in by_module[module] if e[2] != code]
        hard = bool(index % 2 == 0 and same_module)
        pool = same_module if hard else [e for e in rng.sample(anchors, min(40, len(anchors))) if e[2] != code]
        other_module, other_function, _ = min(pool, key=lambda e: abs(len(e[2]) - len(code)))
        rows.append({"func1": code, "func2": rewrite(other_function, rng), "label": 0,
                     "kind": "hard negative" if hard else "negative", "source1": module, "source2": other_module})
    rng.shuffle(rows)
    return rows


def generate(out_dir: Path, max_pairs: int = 3000, seed: int = 42, stdlib: Path | None = None) -> dict[str, int]:
    """Write {train,validation,test}.jsonl and dataset.json to out_dir; return rows per split."""
    stdlib = Path(stdlib or sysconfig.get_paths()["stdlib"])
    rng = random.Random(seed)
    by_split = collect(stdlib)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, share in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        rows = pairs_of(by_split[split], max(2, int(max_pairs * share)), rng)
        with open(out_dir / f"{split}.jsonl", "w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
        counts[split] = len(rows)
    manifest = {
        "description": "stdlib-clones: pairs of Python standard library functions; label 1 = the second is a "
                       "semantics-preserving rewrite of the first (renamed, reformatted, reordered, equivalent "
                       "constructs), 0 = a rewrite of another function (half from the same module, of similar "
                       "length)",
        "text_columns": ["func1", "func2"], "label_column": "label", "positive_label": 1,
        "about": {"labels": {"0": "different functions", "1": "clone"}, "rows": counts,
                  "generated_from": str(stdlib), "seed": seed, "split_by": "source file", "generator": GENERATOR}}
    (out_dir / "dataset.json").write_text(json.dumps(manifest, indent=2))
    return counts
