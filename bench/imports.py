"""The import graph, measured: modules in arbiter/'s root, the longest import chain,
imports that run up a layer (or across independent siblings), and import cycles.

    python -m bench.imports            # arbiter and bench, layers from pyproject.toml

The layers are read from the import-linter contract in pyproject.toml, so this and
``lint-imports`` (run by tests/run.sh) judge by the same table. ``lint-imports``
fails CI on a broken layer; this prints the numbers BENCHMARKS.md keeps.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from functools import cache
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def layers() -> list[list[str]]:
    """Each layer's packages, top first, as pyproject's layers contract lists them."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in cfg["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [[p.strip() for p in row.replace(":", "|").split("|")] for row in contract["layers"]]


def sccs(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                out.append(sorted(comp))
    return out


def measure() -> dict:
    sys.path.insert(0, str(ROOT))
    g = grimp.build_graph("arbiter", "bench", include_external_packages=False)
    edges = {m: set(g.find_modules_directly_imported_by(m)) for m in g.modules}
    comps = sccs(edges)
    comp_of = {m: i for i, c in enumerate(comps) for m in c}

    @cache
    def chain(ci: int) -> tuple[str, ...]:
        outs = {comp_of[w] for m in comps[ci] for w in edges[m]} - {ci}
        return (comps[ci][0], *max((chain(o) for o in outs), key=len, default=()))

    rank: dict[str, tuple[int, str]] = {}
    for n, row in enumerate(reversed(layers())):
        for pkg in row:
            rank[pkg] = (n, pkg)

    def layer_of(m: str) -> tuple[int, str] | None:
        best = None
        for pkg, r in rank.items():
            if (m == pkg or m.startswith(pkg + ".")) and (best is None or len(pkg) > len(best[1])):
                best = r
        return best

    up, across = [], []
    for m, outs in edges.items():
        a = layer_of(m)
        for i in outs:
            b = layer_of(i)
            if a is None or b is None:
                continue
            if a[0] < b[0]:
                up.append(f"{m} -> {i}")
            elif a[0] == b[0] and a[1] != b[1]:
                across.append(f"{m} -> {i}")
    files = [m for m in g.modules if m not in ("arbiter", "bench")]
    longest = max((chain(comp_of[m]) for m in files), key=len)
    root = sorted(m for m in g.modules if m.count(".") == 1 and m.startswith("arbiter.")
                  and not g.find_children(m))
    return {"modules": len(files), "root_modules": root,
            "longest_chain": list(longest), "up_a_layer": sorted(up),
            "across_independent_siblings": sorted(across),
            "cycles": [c for c in comps if len(c) > 1]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    args = p.parse_args()
    r = measure()
    # README "Layout" promises none of these: CI (tests/run.sh) fails on any
    broken = len(r["cycles"]) + len(r["up_a_layer"]) + len(r["across_independent_siblings"])
    if args.json:
        print(json.dumps(r, indent=2))
        return 1 if broken else 0
    print(f"modules: {r['modules']} (arbiter and bench)")
    print(f"modules in arbiter/'s root: {len(r['root_modules'])} "
          f"({', '.join(m.split('.')[-1] for m in r['root_modules'])}; and the config package)")
    print(f"longest import chain: {len(r['longest_chain'])} modules: "
          + " -> ".join(r["longest_chain"]))
    print(f"imports up a layer: {len(r['up_a_layer'])}")
    for x in r["up_a_layer"]:
        print(f"  {x}")
    print(f"imports across independent siblings: {len(r['across_independent_siblings'])}")
    for x in r["across_independent_siblings"]:
        print(f"  {x}")
    print(f"import cycles: {len(r['cycles'])}")
    for c in r["cycles"]:
        print(f"  {' <-> '.join(c)}")
    if broken:
        print(f"bench.imports: {broken} import(s) break the layout README promises",
              file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
