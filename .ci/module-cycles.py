#!/usr/bin/env python3
"""Cycles between a crate's top-level modules (docs/architecture.md, "Module cycles").

Usage: module-cycles.py SRC_DIR [-v]. An edge m -> t is a `crate::t::...` path in module m, or a
name m uses through the crate root that lib.rs re-exports from t (`pub use t::{Name}`). Comments
are ignored. Prints the cycles found; exits 1 if there is one. A text scan, not a compiler: it
can over-count (a name shadowed locally), never under-count a `crate::` path.
"""
import os, re, sys
from collections import defaultdict
root = sys.argv[1]
lib = os.path.join(root, 'lib.rs') if os.path.exists(os.path.join(root, 'lib.rs')) else os.path.join(root, 'main.rs')
mods = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.join(dp, f); rel = os.path.relpath(p, root)[:-3].split(os.sep)
        if rel[-1] in ('mod', 'lib', 'main'): rel = rel[:-1]
        if rel: mods.setdefault(rel[0], []).append(p)
libtext = re.sub(r'//[^\n]*', '', open(lib).read())
names = {}
for m, body in re.findall(r'pub(?:\(crate\))?\s+use\s+([a-z_][a-z0-9_]*)::(\{[^;]*\}|[A-Za-z_][A-Za-z0-9_]*)\s*;', libtext, re.S):
    for n in re.findall(r'\b([A-Za-z_][A-Za-z0-9_]*)\b', body):
        if m in mods: names.setdefault(n, m)
edges = defaultdict(set); where = defaultdict(list)
for m, files in mods.items():
    for p in files:
        s = re.sub(r'//[^\n]*', '', open(p).read())
        for t in re.findall(r'crate::([A-Za-z_][A-Za-z0-9_]*)', s):
            tgt = t if t in mods else names.get(t)
            if tgt and tgt != m: edges[m].add(tgt); where[(m, tgt)].append(os.path.relpath(p, root))
        for blk in re.findall(r'crate::\{([^;]*?)\}\s*;', s, re.S):
            for t in re.findall(r'(?<![:\w])([A-Za-z_][A-Za-z0-9_]*)', blk):
                tgt = t if t in mods else names.get(t)
                if tgt and tgt != m: edges[m].add(tgt); where[(m, tgt)].append(os.path.relpath(p, root))
idx = {}; low = {}; st = []; on = set(); out = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(sorted(comp))
for v in list(mods):
    if v not in idx: sc(v)
print(root, 'modules:', len(mods), 'cycles:', out if out else 'none')
status = 1 if out else 0
if len(sys.argv) > 2:
    for comp in out:
        for m in comp:
            for t in sorted(edges[m] & set(comp)):
                print(f"  {m} -> {t}: {sorted(set(where[(m,t)]))[:4]}")
sys.exit(status)
