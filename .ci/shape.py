#!/usr/bin/env python3
"""The shape rules of ARCHITECTURE.md, checked on every production file under each crate's src/.

* no production `.rs` file over MAX_FILE_LINES lines (inline `#[cfg(test)] mod tests` included:
  a long test module belongs in its own file);
* no production function over MAX_FN_LINES lines (counted from `fn` to its closing brace);
* no import cycle between the modules of a crate, at depth 1 (`core`, `grpc`, ...) and depth 2
  (`core::sessions`, `rules::users`, ...).

Test code is exempt: files named `tests.rs`, anything under a `tests/` directory, and every
module declared behind `#[cfg(test)]`. Prints each violation and exits 1 if there is any.
Usage: python3 .ci/shape.py identity-svc/src portal-sync-svc/src shared/src
"""

import collections
import os
import re
import sys

MAX_FILE_LINES = 600
MAX_FN_LINES = 85

FN = re.compile(r"\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
CFG_TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*\n\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")


def rust_files(root):
    for d, _, names in os.walk(root):
        for n in sorted(names):
            if n.endswith(".rs"):
                yield os.path.join(d, n)


def module_path(root, path):
    parts = os.path.relpath(path, root)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def test_only_files(root, files):
    """Files of modules declared behind `#[cfg(test)]` (and everything below them)."""
    dirs = []
    for f in files:
        for m in CFG_TEST_MOD.finditer(open(f, encoding="utf-8").read()):
            base = os.path.dirname(f)
            if os.path.basename(f) not in ("mod.rs", "lib.rs", "main.rs"):
                base = os.path.join(base, os.path.basename(f)[:-3])
            dirs.append(os.path.join(base, m.group(1)))
    return {f for f in files for d in dirs if f == d + ".rs" or f.startswith(d + os.sep)}


def is_test(path, test_only):
    return path.endswith("tests.rs") or f"{os.sep}tests{os.sep}" in path or path in test_only


def production_lines(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    for i, line in enumerate(lines[:-1]):
        if line.startswith("#[cfg(test)]") and lines[i + 1].startswith("mod tests"):
            return lines, i
    return lines, len(lines)


def strip_code(line):
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//")[0]


def long_functions(path):
    lines, end = production_lines(path)
    for i in range(end):
        m = FN.match(lines[i])
        if not m:
            continue
        depth, started, j = 0, False, i
        while j < end:
            code = strip_code(lines[j])
            for ch in code:
                if ch == "{":
                    depth, started = depth + 1, True
                elif ch == "}":
                    depth -= 1
            if (started and depth <= 0) or (not started and code.rstrip().endswith(";")):
                break
            j += 1
        if started and j - i + 1 > MAX_FN_LINES:
            yield i + 1, m.group(6), j - i + 1


def references(root, path):
    """(top, second) module names that `path` refers to through `crate::` or `super::`."""
    mp = module_path(root, path)
    lines, end = production_lines(path)
    src = "\n".join(strip_code(l) for l in lines[:end])
    for m in re.finditer(r"crate::([a-z_]+)(?:::([a-z_]+))?", src):
        yield m.group(1), m.group(2)
    for m in re.finditer(r"\b((?:super::)+)([a-z_]+)?", src):
        up = m.group(1).count("super::")
        target = (mp[:-up] if up <= len(mp) else []) + ([m.group(2)] if m.group(2) else [])
        if target:
            yield target[0], target[1] if len(target) > 1 else None


def cycles(edges):
    graph = collections.defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def check(root):
    problems = []
    files = list(rust_files(root))
    test_only = test_only_files(root, files)
    edges = {1: set(), 2: set()}
    for f in files:
        if is_test(f, test_only):
            continue
        lines, _ = production_lines(f)
        if len(lines) - 1 > MAX_FILE_LINES:
            problems.append(f"{f}: {len(lines) - 1} lines (at most {MAX_FILE_LINES})")
        for line, name, n in long_functions(f):
            problems.append(f"{f}:{line}: fn {name} is {n} lines (at most {MAX_FN_LINES})")
        mp = module_path(root, f)
        if not mp:
            continue
        for top, second in references(root, f):
            if top != mp[0]:
                edges[1].add((mp[0], top))
            elif len(mp) > 1 and second and second != mp[1]:
                if os.path.exists(os.path.join(root, top, second + ".rs")) or os.path.isdir(
                    os.path.join(root, top, second)
                ):
                    edges[2].add((f"{mp[0]}::{mp[1]}", f"{top}::{second}"))
    for depth in (1, 2):
        for component in cycles(edges[depth]):
            problems.append(f"{root}: import cycle between {', '.join(component)}")
    return problems


def main():
    problems = [p for root in sys.argv[1:] for p in check(root)]
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"shape: {', '.join(sys.argv[1:])}: files ≤ {MAX_FILE_LINES} lines, "
          f"functions ≤ {MAX_FN_LINES} lines, no module cycle")


if __name__ == "__main__":
    main()
