#!/usr/bin/env python3
"""Fan-out through every endpoint, side by side: corestream's ws-binary, ws-text (V3), ws-json
and ws-frame (4.0 framing) against the reference deepstream 7.0.2's ws-binary and ws-text.
Method as perf/compare.py's: server on cpu 0 (corestream: 1 shard), the loader on cpu 1, a
fresh server per endpoint after an unrecorded 2 s warm-up run; 50 subscribers of one name;
the sustained rate is the highest swept rate with no loss and p99 under 50 ms; the CPU cost is
the server's user + system time per delivery at 50k deliveries/s (1,000 emits/s).

Usage: perf/endpoints.py [--duration 5]   (run from the repository root; builds nothing)
"""
import argparse, json, os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare
from compare import LOAD, SERVER, SHARED, log, wait_healthy, stop, server_pid, cpu_per

SERVER_CPU, LOADER_CPU = '0', '1'
RATES = [1000, 4000, 10000, 20000, 40000, 100000, 200000]
SUBSCRIBERS = 50
PATHS = {'binary': '/deepstream', 'text': '/deepstream-v3', 'json': '/deepstream-json',
         'frame': '/deepstream-frame'}


def load(port, protocol, duration, rate, server=None):
    return compare.load(port, duration, LOADER_CPU, 'fanout', '--rate', rate, '--subscribers',
                        SUBSCRIBERS, server=server, path=PATHS[protocol], protocol=protocol)


def measure(start, protocol, duration):
    proc, port = start()
    try:
        pid = server_pid(proc)
        load(port, protocol, 2, 1000)
        best = None
        for rate in RATES:
            r = load(port, protocol, duration, rate)
            if r['lost'] == 0 and r.get('latency p99 (us)', 1e9) < 50_000:
                best = r
            else:
                break
        at50k = load(port, protocol, duration, 1000, server=pid)
        return {
            'sustained deliveries/s': best['deliveries/s'] if best else 0,
            'p99 at 50k/s (us)': at50k.get('latency p99 (us)'),
            'server cpu us per 1000 deliveries at 50k/s': cpu_per(at50k, 'delivered', 1000),
        }
    finally:
        stop(proc)


def start_corestream(work):
    config = os.path.join(work, 'endpoints.yml')
    with open(config, 'w') as f:
        f.write('logLevel: WARN\nconnectionEndpoints:\n  - type: ws-binary\n  - type: ws-text\n'
                '  - type: ws-json\n  - type: ws-frame\n')
    proc = subprocess.Popen([SERVER, 'start', '--cpus', SERVER_CPU, '--host', '127.0.0.1',
                             '--port', '7021', '-c', config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_healthy(7021, exited=proc)
    return proc, 7021


def start_reference(work):
    config = os.path.join(work, 'reference.yml')
    with open(config, 'w') as f:
        f.write('serverName: reference\nshowLogo: false\nlogger:\n  type: default\n  options:\n'
                '    colors: false\n    logLevel: WARN\nhttpServer:\n  type: default\n  options:\n'
                '    host: 127.0.0.1\n    port: 7022\nconnectionEndpoints:\n  - type: ws-binary\n'
                '  - type: ws-text\n    options:\n      urlPath: /deepstream-v3\n')
    proc = subprocess.Popen(['taskset', '-c', SERVER_CPU, 'bash',
                             os.path.join(SHARED, 'peer', 'run.sh'), config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_healthy(7022)
    time.sleep(1)
    return proc, 7022


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--duration', type=int, default=5)
    args = parser.parse_args()
    work = os.path.join(os.path.dirname(LOAD), 'perf-endpoints')
    os.makedirs(work, exist_ok=True)
    results = {}
    for protocol in ['binary', 'text', 'json', 'frame']:
        log(f'corestream {protocol}')
        results[f'corestream {protocol}'] = measure(lambda: start_corestream(work), protocol,
                                                    args.duration)
    for protocol in ['binary', 'text']:
        log(f'reference {protocol}')
        results[f'reference {protocol}'] = measure(lambda: start_reference(work), protocol,
                                                   args.duration)
    print('| server / endpoint | sustained deliveries/s | p99 at 50k/s (µs) | server CPU µs per 1,000 deliveries at 50k/s |')
    print('|---|---:|---:|---:|')
    for name, r in results.items():
        print(f"| {name} | {r['sustained deliveries/s']:,.0f} | {r['p99 at 50k/s (us)']} | "
              f"{r['server cpu us per 1000 deliveries at 50k/s']} |")
    def ratio(a, b, key):
        x, y = results[a][key], results[b][key]
        return f'{x / y:.1f}x' if x and y else 'n/a'
    print()
    print('corestream ws-text vs reference ws-text, sustained:',
          ratio('corestream text', 'reference text', 'sustained deliveries/s'))
    print('CPU per delivery, reference ws-text / corestream ws-text:',
          ratio('reference text', 'corestream text', 'server cpu us per 1000 deliveries at 50k/s'))
    for protocol in ['text', 'json', 'frame']:
        print(f'corestream {protocol} vs binary, sustained:',
              ratio(f'corestream {protocol}', 'corestream binary', 'sustained deliveries/s'),
              '; CPU per delivery:',
              ratio(f'corestream {protocol}', 'corestream binary',
                    'server cpu us per 1000 deliveries at 50k/s'))
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'endpoints-last-run.json'), 'w') as f:
        json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
