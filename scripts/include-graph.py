#!/usr/bin/env python3
"""Draw the module graph of agent/ from its #include "..." lines, and find cycles.

A module is a .c file and its .h (agent/fleet.c + agent/fleet.h is `fleet`; a
folder's modules are named with it, e.g. `ctl/ctl_fmt`). A header without a .c of
its own whose name extends a module's is that module's second interface
(agent/req_engine.h, the creator's side of a request, is module `req`). Module A depends on B when
A's .c or .h includes B's .h. Generated headers (build/gen) and system headers are
not modules.

    scripts/include-graph.py            floors, bottom up, then any cycle; exit 1 on a cycle
    scripts/include-graph.py --dot      the graph in Graphviz dot (| dot -Tsvg > graph.svg)
    scripts/include-graph.py --json     {"modules": {name: [deps]}, "cycles": [[...]]}

Floor 0 holds modules that include no other module; each module sits one floor above
the highest module it includes, so every arrow points down. The modules of a cycle
share a floor and are printed in parentheses.
"""
import json
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
AGENT = os.path.join(ROOT, "agent")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sources():
    """Every .c/.h under agent/, as paths relative to agent/."""
    for dirpath, _, files in os.walk(AGENT):
        for f in files:
            if f.endswith((".c", ".h")):
                yield os.path.relpath(os.path.join(dirpath, f), AGENT)


def module_of(rel, files=None):
    base = os.path.splitext(rel)[0]
    if files is not None and rel.endswith(".h") and base + ".c" not in files:
        # req_engine.h -> req, when req.c exists and req_engine.c does not
        parts = base.split("_")
        for i in range(len(parts) - 1, 0, -1):
            if "_".join(parts[:i]) + ".c" in files:
                return "_".join(parts[:i])
    return base


def graph():
    """{module: set of modules it includes}; only headers that exist in agent/ count."""
    files = set(sources())
    headers = {}  # what an #include "x.h" names -> module
    for rel in files:
        if rel.endswith(".h"):
            headers[rel] = module_of(rel, files)
            headers.setdefault(os.path.basename(rel), module_of(rel, files))
    deps = {module_of(rel, files): set() for rel in files}
    for rel in files:
        with open(os.path.join(AGENT, rel), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        here = os.path.dirname(rel)
        for name in INCLUDE.findall(text):
            # as the compiler looks: beside the including file, then -Iagent
            target = headers.get(os.path.normpath(os.path.join(here, name))) or headers.get(name)
            mod = module_of(rel, files)
            if target is not None and target != mod:
                deps[mod].add(target)
    return deps


def cycles(deps):
    """Strongly connected components of more than one module (Tarjan), or a module
    including itself."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(deps[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in deps[v]:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(deps):
        if v not in index:
            visit(v)
    return out


def floors(deps, cyc):
    """{module: floor}. The modules of a cycle share one floor, above everything
    any of them includes."""
    group = {m: (m,) for m in deps}
    for c in cyc:
        for m in c:
            group[m] = tuple(c)
    floor = {}

    def of(g):
        if g not in floor:
            floor[g] = -1  # a cycle through g is its own group: never reached again
            below = [of(group[d]) for m in g for d in deps[m] if group[d] != g]
            floor[g] = 1 + max(below) if below else 0
        return floor[g]

    return {m: of(group[m]) for m in deps}


def main(argv):
    deps = graph()
    cyc = cycles(deps)
    if "--json" in argv:
        json.dump({"modules": {m: sorted(d) for m, d in sorted(deps.items())},
                   "cycles": cyc}, sys.stdout, indent=1)
        print()
    elif "--dot" in argv:
        print("digraph agent {\n  rankdir=BT;\n  node [shape=box, fontname=monospace];")
        in_cycle = {m for c in cyc for m in c}
        for m in sorted(deps):
            if m in in_cycle:
                print(f'  "{m}" [color=red];')
            for d in sorted(deps[m]):
                print(f'  "{m}" -> "{d}";')
        print("}")
    else:
        floor = floors(deps, cyc)
        for f in range(max(floor.values(), default=-1) + 1):
            in_cycle = {m for c in cyc for m in c}
            names = sorted(m for m, x in floor.items() if x == f and m not in in_cycle)
            names += ["(" + " ".join(c) + ")" for c in cyc if floor[c[0]] == f]
            print(f"floor {f:2}: {' '.join(names)}")
        print(f"{len(deps)} modules, {sum(len(d) for d in deps.values())} includes, "
              f"{len(cyc)} cycle(s)")
        for c in cyc:
            print("cycle: " + " <-> ".join(c))
    return 1 if cyc else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
