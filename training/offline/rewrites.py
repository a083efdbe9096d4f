"""Semantics-preserving rewrites of a Python function, of the clone types BigCloneBench grades:
identifiers renamed, formatting and comments changed, independent statements reordered, and
constructs replaced by equivalent ones. The clone-pair dataset (pairs.py) is built from them."""

from __future__ import annotations

import ast
import builtins
import copy
import keyword
import random

NAMES = ("value", "item", "result", "data", "key", "node", "entry", "total", "count", "index", "text",
         "obj", "elem", "current", "other", "target", "source", "buffer", "part", "state")
COMMENTS = ("# keep going", "# edge case", "# main work", "# done here", "# see above", "# check first",
            "# update", "# the result")
PROTECTED = set(dir(builtins)) | set(keyword.kwlist) | {"self", "cls"}


NESTED_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
                 ast.DictComp, ast.GeneratorExp)


def top_scope_nodes(function: ast.FunctionDef):
    """Every node of the function's own scope, not of the functions, classes and comprehensions in it."""
    stack = list(function.body)
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, NESTED_SCOPES))


def local_names(function: ast.FunctionDef) -> list[str]:
    """The function's name, its arguments and the names bound in its own scope, in order. Only these
    are renamed: a name bound in the function's scope is local everywhere in it (and in the scopes
    nested in it, unless they bind it themselves, which a consistent rename also keeps), so no
    reference to a global, builtin or attribute is touched."""
    declared = {name for node in ast.walk(function) if isinstance(node, (ast.Global, ast.Nonlocal))
                for name in node.names}
    arguments = function.args
    found = [function.name] + [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                                               arguments.vararg, arguments.kwarg) if a is not None]
    found += [node.id for node in top_scope_nodes(function)
              if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)]
    seen, names = set(), []
    for name in found:
        if name not in seen and name not in declared and name not in PROTECTED and not name.startswith("__"):
            seen.add(name)
            names.append(name)
    return names


class Renamer(ast.NodeTransformer):
    """Renames the top function, its arguments and every Name; nested functions' own names and
    arguments only where they bind a renamed name (which keeps the rename consistent)."""

    def __init__(self, mapping: dict[str, str]):
        self.mapping = mapping

    def visit_Name(self, node):
        node.id = self.mapping.get(node.id, node.id)
        return node

    def visit_arg(self, node):
        node.arg = self.mapping.get(node.arg, node.arg)
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node):
        node.name = self.mapping.get(node.name, node.name)
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef


def rename(function: ast.FunctionDef, rng: random.Random) -> None:
    names = local_names(function)
    existing = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)} | set(names)
    pool = [n for n in NAMES if n not in existing]
    rng.shuffle(pool)
    mapping = {}
    for index, name in enumerate(names):
        mapping[name] = pool[index] if index < len(pool) else f"v{index}"
    Renamer(mapping).visit(function)


def names_in(node: ast.AST) -> tuple[set[str], set[str]]:
    stored, loaded = set(), set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            (stored if isinstance(child.ctx, (ast.Store, ast.Del)) else loaded).add(child.id)
    return stored, loaded


def independent(first: ast.stmt, second: ast.stmt) -> bool:
    """Two simple assignments that neither read nor write each other's names, nor call anything."""
    if not all(isinstance(s, (ast.Assign, ast.AnnAssign)) for s in (first, second)):
        return False
    if any(isinstance(n, (ast.Call, ast.Attribute, ast.Subscript, ast.Await, ast.Yield, ast.NamedExpr))
           for s in (first, second) for n in ast.walk(s)):
        return False
    stored_a, loaded_a = names_in(first)
    stored_b, loaded_b = names_in(second)
    return not (stored_a & (stored_b | loaded_b) or stored_b & loaded_a)


class Equivalents(ast.NodeTransformer):
    """Constructs replaced by equivalent ones, each with probability `chance`."""

    def __init__(self, rng: random.Random, chance: float = 0.7):
        self.rng, self.chance, self.changed = rng, chance, 0

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        if isinstance(node.target, ast.Name) and self.rng.random() < self.chance:
            self.changed += 1
            load = ast.Name(node.target.id, ast.Load())
            return ast.Assign([node.target], ast.BinOp(load, node.op, node.value), lineno=node.lineno)
        return node

    def visit_If(self, node):
        self.generic_visit(node)
        if node.orelse and not (len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If)) \
                and self.rng.random() < self.chance:
            self.changed += 1
            test = node.test.operand if isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not) \
                else ast.UnaryOp(ast.Not(), node.test)
            return ast.If(test, node.orelse, node.body)
        return node

    def visit_Compare(self, node):
        self.generic_visit(node)
        if len(node.ops) == 1 and isinstance(node.ops[0], ast.NotEq) and self.rng.random() < self.chance:
            self.changed += 1
            return ast.UnaryOp(ast.Not(), ast.Compare(node.left, [ast.Eq()], node.comparators))
        return node


def reorder(function: ast.AST, rng: random.Random) -> int:
    swaps = 0
    for node in ast.walk(function):
        for field in ("body", "orelse"):
            body = getattr(node, field, None)
            if not isinstance(body, list):
                continue
            for i in range(len(body) - 1):
                if independent(body[i], body[i + 1]) and rng.random() < 0.8:
                    body[i], body[i + 1] = body[i + 1], body[i]
                    swaps += 1
    return swaps


def reformat(code: str, rng: random.Random) -> str:
    """Indentation width, blank lines and comments (at least one); lines inside a multi-line string
    are left alone."""
    width = rng.choice((2, 3, 8))
    lines, out = code.split("\n"), []
    try:
        inside_string = {line for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Constant)
                         and isinstance(node.value, (str, bytes)) and node.end_lineno > node.lineno
                         for line in range(node.lineno + 1, node.end_lineno + 1)}
    except SyntaxError:
        return code
    for number, line in enumerate(lines, start=1):
        if number in inside_string:
            out.append(line)
            continue
        stripped = line.lstrip(" ")
        indent = " " * ((len(line) - len(stripped)) // 4 * width)
        if number > 1 and rng.random() < 0.25:
            out.append(f"{indent}{rng.choice(COMMENTS)}")
        if number > 2 and rng.random() < 0.15:
            out.append("")
        out.append(indent + stripped)
    return "\n".join(out)


REWRITES = ("rename", "equivalents", "reorder", "reformat")


def rewrite(function: ast.FunctionDef, rng: random.Random) -> str:
    """A semantics-preserving rewrite of the function's source: each kind of change with probability
    1/2, at least one, so the clones range from BigCloneBench's type 1 (layout and comments) to
    type 3 (statements changed), as its graded pairs do."""
    kinds = [kind for kind in REWRITES if rng.random() < 0.5] or [rng.choice(REWRITES)]
    tree = copy.deepcopy(function)
    if "rename" in kinds:
        rename(tree, rng)
    if "equivalents" in kinds:
        Equivalents(rng).visit(tree)
    if "reorder" in kinds:
        reorder(tree, rng)
    ast.fix_missing_locations(tree)
    code = ast.unparse(tree)
    if "reformat" in kinds or code == ast.unparse(function):  # a rewrite always differs from the original
        code = reformat(code, rng)
    return code


def compiles(code: str) -> bool:
    try:
        compile(code, "<function>", "exec")
    except SyntaxError:
        return False
    return True
