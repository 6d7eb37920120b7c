#!/usr/bin/env python3
"""Clusters side by side: 3 corestream nodes on NATS against 3 reference deepstream 7.0.2 nodes
on Redis (@deepstream/clusternode-redis 1.0.1, and @deepstream/cache-redis 2.0.9 as the shared
cache records need across reference nodes), publisher on one node, subscribers on the others.

Method (one run; this machine has 2 cpus):
- every server-side process on cpu 0: the 3 nodes (corestream: 1 shard each) and the bus (a
  nats-server -js of the script's own, or a redis-server of its own, on free ports); the loader
  (corestream-load) on cpu 1. Both clusters get the same single core for everything they run.
- events: 50 subscribers of one name spread over nodes 2 and 3, the publisher on node 1; the
  sustained rate is the highest swept delivery rate with no loss and p99 under 50 ms; p99 at
  100k deliveries/s (2,000 emits/s to 50 subscribers).
- record updates: 1 writer on node 1, 50 subscribers of its records over nodes 2 and 3, 2,000
  writes/s (100k update deliveries/s), half whole updates and half path patches.
- bus messages per publish, 2 to 8 nodes (1 shard each): subscribers on node 2 only, 500
  emits from node 1. corestream: the messages the nodes received from NATS
  (corestream_cluster_received_total, summed) per emit; the reference: Redis's PUBLISH calls
  times the nodes subscribed to the event channel (every node receives every message).

Usage: perf/cluster.py [--duration 5] [--skip-reference | --skip-corestream] [--max-nodes 8]   (from the repository root; build
first: cargo build --release --workspace). Needs nats-server, redis-server, node and npm.
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare
from compare import LOAD, SERVER, SHARED, log, wait_healthy, stop, server_pid

SERVER_CPU, LOADER_CPU = '0', '1'
RATES = [1000, 2000, 3000, 4000, 6000, 10000, 15000, 20000, 30000, 40000, 100000]
SUBSCRIBERS = 50
EVENT_CHANNEL = '4'
PEER_HOME = os.environ.get('PEER_CLUSTER_HOME',
                           os.path.join(os.path.expanduser('~'), '.cache', 'deepstream-cluster'))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f'nothing listens on {port}')


def spawn(cmd, **kw):
    return subprocess.Popen(['taskset', '-c', SERVER_CPU, *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, **kw)


class Bus:
    """A NATS (JetStream) or Redis server of this script's own on cpu 0."""

    def __init__(self, kind, work):
        self.kind, self.port = kind, free_port()
        if kind == 'nats':
            store = os.path.join(work, 'nats')
            self.proc = spawn(['nats-server', '-a', '127.0.0.1', '-p', str(self.port), '-js',
                               '-sd', store])
        else:
            self.proc = spawn(['redis-server', '--port', str(self.port), '--bind', '127.0.0.1',
                               '--save', '', '--appendonly', 'no'])
        wait_port(self.port)

    def redis(self, *args):
        out = subprocess.run(['redis-cli', '-p', str(self.port), *args], capture_output=True,
                             text=True, timeout=10)
        return out.stdout

    def close(self):
        stop(self.proc)


def corestream_nodes(n, bus, work):
    config = os.path.join(work, 'corestream.yml')
    with open(config, 'w') as f:
        f.write('logLevel: WARN\nmonitoring:\n  type: prometheus\nclusterNode:\n  name: nats\n'
                f'  options:\n    servers: [nats://127.0.0.1:{bus.port}]\n'
                f'    prefix: bench{os.getpid()}\n')
    nodes = []
    for _ in range(n):
        port = free_port()
        proc = subprocess.Popen([SERVER, 'start', '--cpus', SERVER_CPU, '--host', '127.0.0.1',
                                 '--port', str(port), '-c', config], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        wait_healthy(port, exited=proc)
        nodes.append((proc, port))
    return nodes


def ensure_reference():
    if os.path.isdir(os.path.join(PEER_HOME, 'node_modules', '@deepstream', 'cache-redis')):
        return
    os.makedirs(PEER_HOME, exist_ok=True)
    peer = os.path.join(SHARED, 'peer')
    for name in ('package.json', 'package-lock.json'):
        shutil.copy(os.path.join(peer, name), PEER_HOME)
    shutil.copytree(os.path.join(peer, 'uws-absent'), os.path.join(PEER_HOME, 'uws-absent'),
                    dirs_exist_ok=True)
    subprocess.run(['npm', 'install', '--no-audit', '--no-fund', '--loglevel=error',
                    '@deepstream/clusternode-redis@1.0.1', '@deepstream/cache-redis@2.0.9'],
                   cwd=PEER_HOME, check=True,
                   timeout=600)


def reference_nodes(n, bus, work):
    ensure_reference()
    entry = os.path.join(PEER_HOME, 'node_modules', '@deepstream', 'server', 'dist', 'bin',
                         'deepstream')
    nodes = []
    for i in range(n):
        port = free_port()
        config = os.path.join(work, f'reference{i}.yml')
        with open(config, 'w') as f:
            f.write(f'serverName: ref{i}\nshowLogo: false\nlogger:\n  type: default\n'
                    '  options:\n    colors: false\n    logLevel: WARN\nhttpServer:\n'
                    f'  type: default\n  options:\n    host: 127.0.0.1\n    port: {port}\n'
                    'connectionEndpoints:\n  - type: ws-binary\n'
                    'clusterNode:\n  name: redis\n  options:\n    host: 127.0.0.1\n'
                    f'    port: {bus.port}\n'
                    # Records cross nodes only through a shared cache: a node refuses
                    # updates to records it has never seen.
                    'cache:\n  name: redis\n  options:\n    host: 127.0.0.1\n'
                    f'    port: {bus.port}\n')
        proc = spawn(['node', entry, 'start', '-c', config], cwd=PEER_HOME)
        wait_healthy(port)
        nodes.append((proc, port))
    time.sleep(2)  # the nodes find each other through their heartbeats
    return nodes


def received_total(port):
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('corestream_cluster_received_total'):
                return int(float(line.split()[-1]))
    return 0


def load(nodes, duration, scenario, *args, server=None):
    """One loader run: publishers/writers on node 1, subscribers over the other nodes."""
    subs = ','.join(f'ws://127.0.0.1:{port}/deepstream' for _, port in nodes[1:])
    cmd = [LOAD, '--url', f'ws://127.0.0.1:{nodes[0][1]}/deepstream', '--subscriber-urls', subs,
           '--cpus', LOADER_CPU, '--duration', str(duration), '--json', scenario,
           *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    line = next((l for l in out.stdout.splitlines() if l.startswith('{')), None)
    if line is None:
        raise RuntimeError(f'no result from {cmd}: {out.stderr[-500:]}')
    result = json.loads(line)
    log('   ', scenario, ' '.join(map(str, args)), '->', {k: result[k] for k in result if k in (
        'deliveries/s', 'lost', 'latency p99 (us)', 'update latency p99 (us)', 'errors')})
    return result


def three_nodes(start, bus_kind, duration):
    work = tempfile.mkdtemp(prefix=f'cluster-{bus_kind}-')
    bus = Bus(bus_kind, work)
    nodes = []
    try:
        nodes = start(3, bus, work)
        load(nodes, 2, 'fanout', '--rate', 1000, '--subscribers', SUBSCRIBERS)  # warm-up
        best = None
        for rate in RATES:
            r = load(nodes, duration, 'fanout', '--rate', rate, '--subscribers', SUBSCRIBERS)
            if r['lost'] == 0 and r.get('latency p99 (us)', 1e9) < 50_000:
                best = r
            else:
                break
        events = load(nodes, duration, 'fanout', '--rate', 2000, '--subscribers', SUBSCRIBERS)
        records = load(nodes, duration, 'records', '--rate', 2000, '--subscribers',
                       SUBSCRIBERS)
        return {
            'sustained event deliveries/s': best['deliveries/s'] if best else 0,
            'event p99 at 100k/s (us)': events.get('latency p99 (us)'),
            'event loss at 100k/s': events.get('lost'),
            'record update p99 at 100k/s (us)': records.get('update latency p99 (us)'),
            'record update deliveries/s': records.get('deliveries/s'),
        }
    finally:
        for proc, _ in nodes:
            stop(proc)
        bus.close()
        shutil.rmtree(work, ignore_errors=True)


def bus_messages_per_publish(start, bus_kind, n):
    work = tempfile.mkdtemp(prefix=f'cluster-{bus_kind}-{n}-')
    bus = Bus(bus_kind, work)
    nodes = []
    emits = 500
    try:
        nodes = start(n, bus, work)
        if bus_kind == 'nats':
            before = sum(received_total(port) for _, port in nodes)
        else:
            # A subscriber of our own on the event topic's channel (TOPIC.EVENT = 4) counts
            # what the nodes publish there.
            counted = open(os.path.join(work, 'events.csv'), 'w')
            counter = subprocess.Popen(['redis-cli', '-p', str(bus.port), '--csv', 'SUBSCRIBE',
                                        EVENT_CHANNEL], stdout=counted,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(0.5)
        # Subscribers on node 2 only: the loader spreads them over --subscriber-urls.
        sub_only = [nodes[0], nodes[1]]
        load(sub_only, 2, 'fanout', '--rate', emits // 2, '--subscribers', 10)
        if bus_kind == 'nats':
            crossed = sum(received_total(port) for _, port in nodes) - before
        else:
            # Every node subscribes to the channel and receives every publish.
            numsub = bus.redis('PUBSUB', 'NUMSUB', EVENT_CHANNEL).split()
            receivers = int(numsub[1]) - 1 if len(numsub) > 1 else n
            time.sleep(0.5)
            stop(counter)
            counted.close()
            with open(os.path.join(work, 'events.csv')) as f:
                published = sum(1 for line in f if line.startswith('"message"'))
            crossed = published * receivers
        return round(crossed / emits, 2)
    finally:
        for proc, _ in nodes:
            stop(proc)
        bus.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--duration', type=int, default=5)
    parser.add_argument('--skip-reference', action='store_true')
    parser.add_argument('--skip-corestream', action='store_true')
    parser.add_argument('--max-nodes', type=int, default=8)
    args = parser.parse_args()
    results = {}
    if not args.skip_corestream:
        log('corestream, 3 nodes on NATS')
        results['corestream'] = three_nodes(corestream_nodes, 'nats', args.duration)
    if not args.skip_reference:
        log('reference, 3 nodes on Redis')
        results['reference'] = three_nodes(reference_nodes, 'redis', args.duration)
    scaling = {}
    for n in range(2, args.max_nodes + 1):
        log(f'bus messages per publish, {n} nodes')
        row = {}
        if not args.skip_corestream:
            row['corestream'] = bus_messages_per_publish(corestream_nodes, 'nats', n)
        if not args.skip_reference:
            row['reference'] = bus_messages_per_publish(reference_nodes, 'redis', n)
        scaling[n] = row
        log('   ', n, row)
    results['bus messages per publish'] = scaling
    print(json.dumps(results, indent=2))


if __name__ == '__main__':
    main()
