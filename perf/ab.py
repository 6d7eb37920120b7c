#!/usr/bin/env python3
"""A/B of two corestream builds on the paths a change touched: RPC, fan-out at 1M deliveries/s
and record updates (half whole, half path patches) at 1M deliveries/s, each on a fresh server
pinned to cpu 0 after a warm-up, the loader on cpu 1, rounds alternating A and B. Prints every
round and the medians; this machine's noise is judged from the spread of the rounds of one build.

Usage: perf/ab.py OLD_BINARY NEW_BINARY [--rounds 3] [--duration 5] [--only rpc]
"""
import argparse, os, statistics, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c

SCENARIOS = {
    'rpc': (c.RPC, 'round trips/s', 'round trip p99 (us)', 'responses'),
    'fanout 1M/s': (('fanout', '--rate', 20000, '--subscribers', 50), 'deliveries/s',
                    'latency p99 (us)', 'delivered'),
    'records 1M/s': (('records', '--rate', 20000, '--subscribers', 50), 'deliveries/s',
                     'update latency p99 (us)', 'writes'),
}


def run_round(binary, duration):
    out = {}

    def body(port, pid):
        for name, (args, rate_key, p99_key, count_key) in SCENARIOS.items():
            c.warm_up(port, c.LOADER_CPU, *args)
            r = c.load(port, duration, c.LOADER_CPU, *args, server=pid)
            out[name] = (r.get(rate_key), r.get(p99_key), c.cpu_per(r, count_key))
    c.fresh(lambda: c.start_corestream(c.SERVER_CPU, binary))(body)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('old')
    ap.add_argument('new')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--duration', type=int, default=5)
    ap.add_argument('--only', choices=sorted(SCENARIOS), help='one scenario')
    a = ap.parse_args()
    if a.only:
        for name in list(SCENARIOS):
            if name != a.only:
                del SCENARIOS[name]
    rounds = {'A': [], 'B': []}
    for _ in range(a.rounds):
        for label, binary in (('A', a.old), ('B', a.new)):
            rounds[label].append(run_round(binary, a.duration))
    print(f"{'scenario':<16}{'build':>6}{'rate (rounds)':>40}{'p99 us (rounds)':>30}{'cpu us/op (rounds)':>30}")
    for name in SCENARIOS:
        for label in ('A', 'B'):
            rates = [r[name][0] for r in rounds[label]]
            p99s = [r[name][1] for r in rounds[label]]
            cpus = [r[name][2] for r in rounds[label]]
            fmt = lambda xs: '/'.join(f'{x:.0f}' if x and x > 100 else f'{x}' for x in xs)
            print(f'{name:<16}{label:>6}{fmt(rates):>40}{fmt(p99s):>30}{fmt(cpus):>30}')
        med = lambda label, i: statistics.median(r[name][i] for r in rounds[label] if r[name][i])
        print(f"{'':<16}{'B/A':>6}{med('B', 0) / med('A', 0):>40.3f}{med('B', 1) / med('A', 1):>30.3f}{med('B', 2) / med('A', 2):>30.3f}")


if __name__ == '__main__':
    main()
