#!/usr/bin/env python3
"""Two structural rules no compiler checks, run by scripts/test.sh:

1. No import cycles between modules. Inside each crate, every path a file
   names (`use crate::…`, `use super::…`, `crate::x::y` in code) is an edge
   from its module to the module it reaches. An edge between two modules is
   lifted to the two children of their nearest common ancestor that hold
   them (so `a::b::c` using `a::d` is an edge `b -> d` under `a`); a child
   naming its own ancestor is not an edge (that is how a submodule reads its
   parent's types). A cycle among siblings means two files that cannot be
   understood one without the other.

2. No file cites a document outside the repository: the design lives in
   docs/, and a reference elsewhere is one a reader cannot follow.

Exits 1 with every finding listed.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Crates and where their module trees start.
CRATES = {
    "slip": "src",
    "slip_proto": "proto/src",
    "slip_metrics": "metrics/src",
    "slip_link": "link/src",
    "slip_edge": "edge/src",
    "slip_control_plane": "control-plane/src",
    "slip_sdk": "sdk/src",
    "slip_bench": "bench/src",
}

USE_BLOCK = re.compile(r"\buse\s+((?:crate|super|self)(?:::[^;]*)?);", re.S)
INLINE_PATH = re.compile(r"\b(crate(?:::\w+)+|super(?:::\w+)+)")
COMMENT = re.compile(r"//[^\n]*")


def module_of(src_root, path):
    rel = os.path.relpath(path, src_root)[: -len(".rs")].split(os.sep)
    if rel[-1] in ("lib", "main", "mod"):
        rel = rel[:-1]
    return tuple(rel)


def expand(tree):
    """`a::{b, c::{d}}` into [a::b, a::c::d] (paths only, no `as`)."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, text):
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(text):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(text[start:i])
                start = i + 1
        parts.append(text[start:])
        for part in parts:
            if not part:
                continue
            if "{" in part:
                head, rest = part.split("{", 1)
                walk(prefix + head, rest[: rest.rfind("}")])
            else:
                out.append(prefix + part)

    walk("", tree)
    return out


def resolve(path, here, modules):
    """The module a `crate::`/`super::` path lands in (longest known prefix)."""
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = (), parts[1:]
    else:
        base = here
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                base = base[:-1]
            parts = parts[1:]
        rest = parts
    best = base
    for i in range(1, len(rest) + 1):
        candidate = base + tuple(rest[:i])
        if candidate in modules:
            best = candidate
    return best


def cycles_in(crate, src_root):
    files = []
    for dirpath, _, names in os.walk(os.path.join(ROOT, src_root)):
        files += [os.path.join(dirpath, n) for n in names if n.endswith(".rs")]
    root = os.path.join(ROOT, src_root)
    modules = {module_of(root, f): f for f in files}
    edges = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            text = COMMENT.sub("", f.read())
        targets = []
        for block in USE_BLOCK.findall(text):
            targets += expand(block)
        targets += INLINE_PATH.findall(text)
        for target in targets:
            to = resolve(target, module, modules)
            if to[: len(module)] == module or module[: len(to)] == to:
                continue  # itself, a descendant, or an ancestor
            common = 0
            while module[common] == to[common]:
                common += 1
            a, b = module[: common + 1], to[: common + 1]
            edges.setdefault(a, set()).add(b)
    return find_cycles(edges)


def find_cycles(edges):
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def outside_references():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    pattern = re.compile(r"DESIGN(\.md)?\s*§|\.\./shared/|STYLE\.md")
    me = os.path.relpath(os.path.abspath(__file__), ROOT)
    hits = []
    for rel in tracked:
        if rel == me or not os.path.isfile(os.path.join(ROOT, rel)):
            continue
        try:
            with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if pattern.search(line):
                        hits.append(f"{rel}:{n}: {line.strip()}")
        except UnicodeDecodeError:
            continue
    return hits


def main():
    problems = []
    for crate, src in CRATES.items():
        if not os.path.isdir(os.path.join(ROOT, src)):
            continue
        for cycle in cycles_in(crate, src):
            names = " <-> ".join("::".join((crate,) + m) for m in cycle)
            problems.append(f"import cycle: {names}")
    problems += [f"cites a document outside the repository: {h}" for h in outside_references()]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
