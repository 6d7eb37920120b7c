#!/usr/bin/env python3
"""RPC only, three rounds of reference then corestream, each on a fresh server after a warm-up;
prints each round's ratio and the ratio of the medians. A single compare.py run gives one RPC
ratio, and the reference's figure alone swings 22-30k between runs.

Usage: perf/rpc_pairs.py   (run from the repository root after `cargo build --release --workspace`)
"""
import os, statistics, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c

res = {'reference': [], 'corestream': []}
for _ in range(3):
    for name, start in (('reference', c.start_reference), ('corestream', lambda: c.start_corestream('0'))):
        proc, port = start()
        try:
            c.warm_up(port, c.LOADER_CPU, 'rpc', '--callers', 16, '--inflight', 4)
            r = c.load(port, 5, c.LOADER_CPU, 'rpc', '--callers', 16, '--inflight', 4)
            res[name].append((r['round trips/s'], r.get('round trip p99 (us)')))
        finally:
            c.stop(proc)
print(res)
ref = [x[0] for x in res['reference']]; cs = [x[0] for x in res['corestream']]
print('ratios per round', [round(b / a, 2) for a, b in zip(ref, cs)])
print('median ratio', round(statistics.median(cs) / statistics.median(ref), 2))
