#!/usr/bin/env python3
"""RPC only, three rounds of reference then corestream, each on a fresh server after a warm-up;
prints each round's ratio and the ratio of the medians. A single compare.py run gives one RPC
ratio, and the reference's figure alone swings 22-30k between runs.

Usage: perf/rpc_pairs.py   (run from the repository root after `cargo build --release --workspace`)
"""
import os, statistics, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c


def rpc_run(port, pid):
    c.warm_up(port, c.LOADER_CPU, *c.RPC)
    r = c.load(port, 5, c.LOADER_CPU, *c.RPC)
    return r['round trips/s'], r.get('round trip p99 (us)')


def main():
    servers = {'reference': c.start_reference, 'corestream': lambda: c.start_corestream('0')}
    runs = {name: [] for name in servers}
    for _ in range(3):
        for name, start in servers.items():
            runs[name].append(c.fresh(start)(rpc_run))
    print(runs)
    ref = [rate for rate, _ in runs['reference']]
    ours = [rate for rate, _ in runs['corestream']]
    print('ratios per round', [round(b / a, 2) for a, b in zip(ref, ours)])
    print('median ratio', round(statistics.median(ours) / statistics.median(ref), 2))


if __name__ == '__main__':
    main()
