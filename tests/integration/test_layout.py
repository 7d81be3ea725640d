"""The tree's layout holds (issue 14): no include cycle between the modules of agent/,
and the operator CLI links no SPOP-engine code.

The Makefile builds three archives (see its ENGINE list): build/libengine.a, the
modules only the daemon uses; build/libshared.a, the modules both programs use;
build/libctl.a, agent/ctl/. What counts as "engine" is read from the engine archive
itself (its members and the global symbols they define), never from a list written
here, so these tests follow the Makefile. They need `make all`.
"""
import glob
import json
import pathlib
import re
import subprocess
import sys

import harness

REPO = harness.REPO
BUILD = REPO / "build"
ENGINE_LIB = BUILD / "libengine.a"
SHARED_LIB = BUILD / "libshared.a"
CTL_LIB = BUILD / "libctl.a"
STICKYD = REPO / "agent" / "stickyd"
STICKYCTL = REPO / "agent" / "stickyctl"

def nm(path, *flags):
    """{member: {(type, symbol)}} of `nm -A` on an archive; {None: ...} for a program."""
    out = subprocess.run(["nm", "-A", *flags, str(path)], check=True, capture_output=True,
                         text=True).stdout
    res = {}
    for line in out.splitlines():
        # "archive:member:addr T sym" (archive) or "program: addr T sym"
        if path.suffix == ".a":
            _, member, rest = line.split(":", 2)
        else:
            member, rest = None, line.split(":", 1)[1]
        parts = rest.split()
        if len(parts) < 2:
            continue
        res.setdefault(member, set()).add((parts[-2], parts[-1]))
    return res


def defined_globals(path):
    """{member or None: {symbol}}: the external symbols each member (or the program) defines."""
    return {m: {s for t, s in syms if t.isupper() and t not in "UVW"}
            for m, syms in nm(path, "--defined-only").items()}


def undefined(path):
    return {m: {s for _, s in syms} for m, syms in nm(path, "--undefined-only").items()}


def compilation_units(path):
    """The source files (STT_FILE symbols) linked into a program: one per object."""
    out = subprocess.run(["readelf", "-sW", str(path)], check=True, capture_output=True,
                         text=True).stdout
    rows = (line.split() for line in out.splitlines())
    return {r[-1] for r in rows if len(r) >= 8 and r[3] == "FILE"}


def makefile_engine_list():
    out = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(REPO), "print-ENGINE"],
                         check=True, capture_output=True, text=True).stdout
    return out.split()


def engine_members():
    return defined_globals(ENGINE_LIB)


def test_the_engine_archive_is_the_makefiles_engine_list():
    for lib in (ENGINE_LIB, SHARED_LIB, CTL_LIB, STICKYD, STICKYCTL):
        assert lib.exists(), "%s is missing: run `make all` first" % lib
    listed = makefile_engine_list()
    assert len(listed) >= 5, listed
    assert sorted(m[:-2] for m in engine_members()) == sorted(listed), \
        "build/libengine.a is stale: not the Makefile's ENGINE list"


def test_stickyctl_defines_no_engine_symbol_and_stickyd_does():
    engine = engine_members()
    assert "spop.o" in engine and "conn.o" in engine, sorted(engine)
    ctl_syms = defined_globals(STICKYCTL)[None]
    daemon_syms = defined_globals(STICKYD)[None]
    ctl_units = compilation_units(STICKYCTL)
    daemon_units = compilation_units(STICKYD)
    assert "stickyctl.c" in ctl_units and "main.c" in daemon_units

    leaked = {m: sorted(syms & ctl_syms) for m, syms in engine.items() if syms & ctl_syms}
    assert not leaked, "agent/stickyctl defines engine symbols: %s" % leaked
    units = sorted(m[:-2] + ".c" for m in engine if m[:-2] + ".c" in ctl_units)
    assert not units, "agent/stickyctl links engine objects: %s" % units

    # Not vacuous: every engine object is in the daemon, with the symbols it defines.
    for m, syms in engine.items():
        assert syms, "%s defines no external symbol" % m
        assert syms <= daemon_syms, "agent/stickyd lacks %s's %s" % (m, sorted(syms - daemon_syms))
        assert m[:-2] + ".c" in daemon_units, m
    # The CLI does link the shared floor (the config loader, the Redis client).
    assert {"cfg_load", "store_new"} & ctl_syms, "stickyctl links no shared module?"


def test_shared_and_ctl_modules_never_call_into_the_engine():
    engine_syms = set().union(*engine_members().values())
    ctl_syms = set().union(*defined_globals(CTL_LIB).values())
    calls_up = {}
    for lib, above in ((SHARED_LIB, engine_syms | ctl_syms), (CTL_LIB, engine_syms)):
        for m, syms in undefined(lib).items():
            if syms & above:
                calls_up["%s(%s)" % (lib.name, m)] = sorted(syms & above)
    assert not calls_up, ("a shared or CLI module needs an engine (or CLI) symbol: move the "
                          "helper down, or list the module in the Makefile's ENGINE: %s" % calls_up)


def include_graph():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "include-graph.py"), "--json"],
                         capture_output=True, text=True)
    return out.returncode, json.loads(out.stdout)


def test_no_include_cycle_between_modules():
    rc, graph = include_graph()
    assert graph["cycles"] == [], "modules that include each other: %s" % graph["cycles"]
    assert rc == 0
    # the script reads the real tree (so an empty graph cannot pass): the engine's
    # layering as the README draws it
    mods = graph["modules"]
    assert "spop" in mods["conn"] and "req" in mods["conn"]
    assert "conn" not in mods["req"], "req.c must not know its creator"
    assert mods["spop"] == [], "the codec includes no other module"
    outsiders = [m for m, deps in mods.items()
                 if not m.startswith("ctl/") and any(d.startswith("ctl/") for d in deps)]
    assert outsiders == [], "only the CLI includes the CLI: %s" % outsiders


def test_include_graph_finds_a_cycle(tmp_path):
    """The check can fail: the same script on a tree with a circle says so."""
    agent = tmp_path / "agent"
    (tmp_path / "scripts").mkdir()
    agent.mkdir()
    (tmp_path / "scripts" / "include-graph.py").write_bytes(
        (REPO / "scripts" / "include-graph.py").read_bytes())
    (agent / "a.h").write_text('#include "b.h"\n')
    (agent / "a.c").write_text('#include "a.h"\n')
    (agent / "b.h").write_text("\n")
    (agent / "b.c").write_text('#include "b.h"\n#include "a.h"\n')
    (agent / "b_int.h").write_text('#include "b.h"\n')  # b's second interface: no circle
    out = subprocess.run([sys.executable, str(tmp_path / "scripts" / "include-graph.py")],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "cycle: a <-> b" in out.stdout
    assert "b_int" not in out.stdout


def readme_table_paths():
    """Every path the README's "How to read the rest of the repo" table names, with
    `x.[ch]` standing for x.c and x.h and `dir/*.lua` for the files it matches."""
    text = (REPO / "README.md").read_text()
    start = text.index("## How to read the rest of the repo")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else len(text)]
    named = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        for p in re.findall(r"`([^`]+)`", line.split(" | ")[0]):
            paths = [p[:-5] + ".c", p[:-5] + ".h"] if p.endswith(".[ch]") else [p]
            for q in paths:
                named.update(glob.glob(str(REPO / q)) if "*" in q else [str(REPO / q)])
    return {str(pathlib.Path(n).relative_to(REPO)) for n in named}


def test_readme_table_names_every_file_of_agent_and_only_those():
    files = subprocess.run(["git", "ls-files", "agent"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    named = readme_table_paths()
    assert [f for f in files if f not in named] == [], "files of agent/ the README table misses"
    gone = [n for n in named if n.startswith("agent/") and not (REPO / n).exists()]
    assert gone == [], "the README table names files that do not exist"
