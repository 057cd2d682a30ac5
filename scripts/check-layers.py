#!/usr/bin/env python3
"""Enforce the rules of docs/ARCHITECTURE.md "Layers" on marbled's sources.

Rules checked (each is written in that section; the table between the `layers:begin` and
`layers:end` markers is the single source of the layer numbers):

  1. every top-level module of marbled/src has a layer in the table, and the table names
     no module that does not exist;
  2. a module refers only to modules of a strictly lower layer (`crate::x`, `super::x` paths
     that reach the crate root, and intra-doc links all count: a doc link is a dependency
     of the documentation);
  3. no cycle between top-level modules (implied by 2, checked on its own so a wrong table
     still reports the cycle);
  4. no `#[path = ...]` attribute;
  5. no file over 800 lines (tests included: src/, and the crate's tests/, benches/, examples/);
  6. no function over 100 lines outside `#[cfg(test)]` code.

Usage: check-layers.py [--src DIR] [--doc FILE]   (defaults: marbled/src, docs/ARCHITECTURE.md)
Exit 0 when every rule holds, 1 with one line per violation otherwise, 2 on bad input.
A Rust test (tests/tests/layers_check.rs) copies the tree, plants violations and shows that
each makes this script fail.
"""

import argparse
import os
import re
import sys

MAX_FILE_LINES = 800
MAX_FN_LINES = 100


def parse_layers(doc_path):
    """{module: layer} from the table between the markers."""
    with open(doc_path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- layers:begin -->(.*?)<!-- layers:end -->", text, re.S)
    if not m:
        raise ValueError(f"{doc_path}: no <!-- layers:begin --> ... <!-- layers:end --> block")
    layers = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].isdigit():
            continue
        for name in re.findall(r"`([a-z_][a-z0-9_]*)`", cells[1]):
            if name in layers:
                raise ValueError(f"{doc_path}: module `{name}` is listed twice")
            layers[name] = int(cells[0])
    if not layers:
        raise ValueError(f"{doc_path}: the layer table is empty")
    return layers


def strip_code(text):
    """The text with comments, string and char literals blanked (newlines kept), plus the
    intra-doc link targets found in doc comments as (line, path) pairs."""
    out = []
    links = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            out.append(c)
            line += 1
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            comment = text[i:j]
            if comment.startswith("///") or comment.startswith("//!"):
                for target in re.findall(r"\[`?([A-Za-z_:][A-Za-z0-9_:]*)`?\]", comment):
                    links.append((line, target))
                for target in re.findall(r"\]\(([A-Za-z_:][A-Za-z0-9_:]*)\)", comment):
                    links.append((line, target))
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            chunk = text[i:j]
            out.append("".join("\n" if ch == "\n" else " " for ch in chunk))
            line += chunk.count("\n")
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 260]) and not re.match(r"[A-Za-z0-9_]", text[i - 1] if i else " "):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            chunk = text[i:end]
            out.append("".join("\n" if ch == "\n" else " " for ch in chunk))
            line += chunk.count("\n")
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            chunk = text[i:j + 1]
            out.append("".join("\n" if ch == "\n" else " " for ch in chunk))
            line += chunk.count("\n")
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), or a lifetime ('a) left as is.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:i + 12])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out), links


def module_path(src, path):
    """Module path of a source file as a list, e.g. sched/world.rs -> ['sched', 'world']."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return []
    return rel


def referenced_top_modules(mod_path, code, links, known):
    """(line, top module) for every path in `code` and `links` that reaches the crate root."""
    refs = []

    def resolve(segments):
        if not segments:
            return None
        if segments[0] == "crate":
            return segments[1] if len(segments) > 1 else None
        if segments[0] == "super":
            base = list(mod_path)
            while segments and segments[0] == "super":
                if not base:
                    return None
                base.pop()
                segments = segments[1:]
            if base:
                return base[0]
            return segments[0] if segments else None
        return None

    for lineno, text in enumerate(code.split("\n"), start=1):
        for m in re.finditer(r"\b((?:crate|super)(?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)+)", text):
            segs = [s.strip() for s in m.group(1).split("::")]
            top = resolve(segs)
            if top in known:
                refs.append((lineno, top))
        # `use crate::{a, b}` / `use super::{…}` at the root: each name in the group.
        for m in re.finditer(r"\b(crate|super)\s*::\s*\{([^}]*)\}", text):
            if m.group(1) == "super" and len(mod_path) != 1:
                continue
            for name in re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", m.group(2)):
                if name in known:
                    refs.append((lineno, name))
    for lineno, target in links:
        top = resolve(target.split("::"))
        if top in known:
            refs.append((lineno, top))
    return refs


def function_spans(code):
    """(name, first line, last line) of every `fn` with a body, outside #[cfg(test)] items."""
    spans = []
    tokens = list(re.finditer(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]|\bfn\s+([A-Za-z_][A-Za-z0-9_]*)|[{};()\[\]]", code))
    line_of = lambda pos: code.count("\n", 0, pos) + 1  # noqa: E731
    depth = 0
    pending_test = False
    test_depth = None  # brace depth at which the current #[cfg(test)] item's body opened
    stack = []  # (kind, name, start_pos, depth) for open fns
    pending_fn = None
    nesting = 0  # ( and [ depth: a `;` inside `[u8; 4]` ends nothing
    for t in tokens:
        s = t.group(0)
        if s in "([":
            nesting += 1
        elif s in ")]":
            nesting = max(0, nesting - 1)
        elif s.startswith("#"):
            pending_test = True
        elif t.group(1):
            pending_fn = (t.group(1), t.start())
        elif s == ";" and nesting == 0:
            if pending_fn is not None and (not stack or stack[-1][2] != depth):
                pending_fn = None  # a declaration without a body (trait item)
            if pending_test and test_depth is None:
                pending_test = False  # #[cfg(test)] on a `mod x;` or `use`
        elif s == "{":
            depth += 1
            if pending_test and test_depth is None:
                test_depth = depth
                pending_test = False
            if pending_fn is not None:
                stack.append((pending_fn[0], pending_fn[1], depth, test_depth is not None))
                pending_fn = None
        elif s == "}":
            if stack and stack[-1][2] == depth:
                name, start, _, in_test = stack.pop()
                if not in_test:
                    spans.append((name, line_of(start), line_of(t.start())))
            if test_depth is not None and depth == test_depth:
                test_depth = None
            depth -= 1
    return spans


def tarjan_cycles(graph):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(src, doc):
    problems = []
    layers = parse_layers(doc)
    files = []
    for d, _, fs in os.walk(src):
        for f in sorted(fs):
            if f.endswith(".rs"):
                files.append(os.path.join(d, f))
    files.sort()
    tops = set()
    for p in files:
        mp = module_path(src, p)
        if mp and mp[0] != "bin":
            tops.add(mp[0])
    for name in sorted(tops - layers.keys()):
        problems.append(f"{src}/{name}: module `{name}` has no layer in {doc}")
    for name in sorted(layers.keys() - tops):
        problems.append(f"{doc}: the layer table names `{name}`, which is not a module of {src}")
    graph = {t: set() for t in tops}
    for p in files:
        rel = os.path.relpath(p, os.path.dirname(src))
        with open(p, encoding="utf-8") as f:
            text = f.read()
        nlines = text.count("\n")
        if nlines > MAX_FILE_LINES:
            problems.append(f"{rel}: {nlines} lines (at most {MAX_FILE_LINES})")
        for m in re.finditer(r"#\s*\[\s*path\s*=", text):
            problems.append(f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: #[path] attribute")
        code, links = strip_code(text)
        for name, first, last in function_spans(code):
            if last - first + 1 > MAX_FN_LINES:
                problems.append(f"{rel}:{first}: fn {name} is {last - first + 1} lines (at most {MAX_FN_LINES})")
        mp = module_path(src, p)
        if not mp or mp[0] == "bin":
            continue  # the crate root declares modules; binaries sit on top
        me = mp[0]
        seen = set()
        for lineno, other in referenced_top_modules(mp, code, links, tops):
            if other == me:
                continue
            graph[me].add(other)
            if (other, lineno) in seen:
                continue
            seen.add((other, lineno))
            mine, theirs = layers.get(me), layers.get(other)
            if mine is not None and theirs is not None and theirs >= mine:
                problems.append(
                    f"{rel}:{lineno}: `{me}` (layer {mine}) refers to `{other}` (layer {theirs}); "
                    f"a module may refer only to lower layers"
                )
    # The file-size rule covers the whole crate: its integration tests and benches too.
    crate_dir = os.path.dirname(os.path.abspath(src))
    for extra in ("tests", "benches", "examples"):
        for d, _, fs in os.walk(os.path.join(crate_dir, extra)):
            for f in sorted(fs):
                if f.endswith(".rs"):
                    p = os.path.join(d, f)
                    with open(p, encoding="utf-8") as fh:
                        nlines = fh.read().count("\n")
                    if nlines > MAX_FILE_LINES:
                        rel = os.path.relpath(p, os.path.dirname(crate_dir))
                        problems.append(f"{rel}: {nlines} lines (at most {MAX_FILE_LINES})")
    for comp in tarjan_cycles(graph):
        problems.append("module cycle: " + " -> ".join(comp + [comp[0]]))
    return problems, graph


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="marbled/src")
    ap.add_argument("--doc", default="docs/ARCHITECTURE.md")
    ap.add_argument("--graph", action="store_true", help="print the module graph")
    args = ap.parse_args()
    try:
        problems, graph = check(args.src, args.doc)
    except (OSError, ValueError) as e:
        print(f"check-layers: {e}", file=sys.stderr)
        return 2
    if args.graph:
        for k in sorted(graph):
            print(f"{k} -> {' '.join(sorted(graph[k]))}")
    for p in problems:
        print(p)
    if problems:
        print(f"check-layers: {len(problems)} violation(s) of {args.doc} 'Layers'", file=sys.stderr)
        return 1
    print(f"check-layers: {args.src} follows every rule of {args.doc} 'Layers'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
