"""HA benchmark driver (bench/ha.sh): a real 3-member etcd cluster and 3 `lambdamesh server`
replicas on loopback, all started and stopped here. Measures, in one run:
  - etcd's own put rate: 16 clients doing raw puts through etcd's JSON gateway (/v3/kv/put), the
    same HTTP/1.1 + JSON client shape as the writers below;
  - durable writes/s with 16 clients spread over the 3 replicas (PUT /v1/catalog/register);
  - the same 16 clients against one server on the embedded store;
  - blocking-query fan-out: N watchers spread over the replicas, one write, wake-up latencies;
  - writer failover: time from `kill -9` of the etcd leader until a write succeeds again.
Loopback only; every child killed and every directory removed at exit."""

import base64, http.client, json, os, shutil, signal, subprocess, sys, tempfile, threading, time

BIN = os.environ.get("LAMBDAMESH_BIN") or sys.exit("LAMBDAMESH_BIN not set")
SECS = float(os.environ.get("HA_BENCH_SECS", "10"))
CLIENTS = int(os.environ.get("HA_BENCH_CLIENTS", "16"))
WATCHERS = int(os.environ.get("HA_BENCH_WATCHERS", "1000"))
work = tempfile.mkdtemp(prefix="lambdamesh-ha-bench-")
children = []


def cleanup(*_):
    for c in children:
        try:
            c.kill()
            c.wait()
        except Exception:
            pass
    shutil.rmtree(work, ignore_errors=True)


signal.signal(signal.SIGINT, lambda *_: (cleanup(), sys.exit(130)))
signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(143)))


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def request(port, method, path, body=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def wait_ok(port, path, secs=60):
    end = time.time() + secs
    while time.time() < end:
        try:
            if request(port, "GET", path, timeout=2)[0] == 200:
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit(f"127.0.0.1:{port}{path} did not come up (logs in {work})")


def start_etcd():
    members = [(f"e{i}", free_port(), free_port()) for i in range(3)]
    cluster = ",".join(f"{n}=http://127.0.0.1:{pp}" for n, _, pp in members)
    procs = []
    for n, cp, pp in members:
        p = subprocess.Popen(
            ["etcd", "--name", n, "--data-dir", f"{work}/{n}",
             "--listen-client-urls", f"http://127.0.0.1:{cp}", "--advertise-client-urls", f"http://127.0.0.1:{cp}",
             "--listen-peer-urls", f"http://127.0.0.1:{pp}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
             "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "bench",
             "--logger", "zap", "--log-outputs", f"{work}/{n}.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        children.append(p)
        procs.append(p)
    for _, cp, _ in members:
        wait_ok(cp, "/health")
    return members, procs


def start_server(name, extra):
    http, grpc = free_port(), free_port()
    log = open(f"{work}/{name}.log", "w")
    p = subprocess.Popen([BIN, "server", "-node", name, "-data-dir", f"{work}/{name}",
                          "-http-addr", f"127.0.0.1:{http}", "-grpc-addr", f"127.0.0.1:{grpc}"] + extra,
                         stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "LAMBDAMESH_LOG": "warn"})
    children.append(p)
    wait_ok(http, "/v1/status/leader")
    return p, http


def load(ports, secs, make):
    """CLIENTS threads, client i on ports[i % len]; returns (ok, errors, elapsed)."""
    stop = time.time() + secs
    counts = [[0, 0] for _ in range(CLIENTS)]

    def run(i):
        port = ports[i % len(ports)]
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while time.time() < stop:
            n += 1
            method, path, body = make(i, n)
            try:
                c.request(method, path, body=body)
                r = c.getresponse()
                r.read()
                counts[i][0 if r.status == 200 else 1] += 1
            except Exception:
                counts[i][1] += 1
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t0 = time.time()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    el = time.time() - t0
    return sum(c[0] for c in counts), sum(c[1] for c in counts), el


def register(i, n):
    body = json.dumps({"Node": f"bench-{i}", "Address": "127.0.0.1",
                       "Service": {"ID": f"s-{i}-{n}", "Service": f"svc-{i}", "Port": 1}})
    return "PUT", "/v1/catalog/register", body


def etcd_put(i, n):
    k = base64.b64encode(f"/bench/raw/{i}/{n}".encode()).decode()
    v = base64.b64encode(b"x" * 200).decode()
    return "POST", "/v3/kv/put", json.dumps({"key": k, "value": v})


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def main():
    results = {}
    members, etcd_procs = start_etcd()
    etcd_ports = [cp for _, cp, _ in members]
    endpoints = ",".join(f"http://127.0.0.1:{p}" for p in etcd_ports)
    key = f"{work}/etcd.key"
    with open(key, "w") as f:
        f.write(os.urandom(32).hex())
    ok, err, el = load(etcd_ports, SECS, etcd_put)
    results["etcd_raw_puts_per_s"] = round(ok / el)
    replicas = [start_server(f"r{i}", ["-etcd-endpoints", endpoints, "-etcd-encryption-key-file", key])
                for i in range(3)]
    ports = [h for _, h in replicas]
    ok, err, el = load(ports, SECS, register)
    results["ha_writes_per_s"] = round(ok / el)
    results["ha_write_errors"] = err
    results["ha_vs_etcd_raw"] = round(results["ha_writes_per_s"] / max(1, results["etcd_raw_puts_per_s"]), 2)

    # Fan-out: watchers spread over the replicas, one write through replica 0.
    request(ports[0], "PUT", "/v1/catalog/register",
            json.dumps({"Node": "fan", "Address": "127.0.0.1", "Service": {"ID": "fan-0", "Service": "fan", "Port": 1}}))
    time.sleep(1)
    idx = [int(request(p, "GET", "/v1/catalog/service/fan")[2]["x-consul-index"]) for p in ports]
    woke, ready = [], threading.Barrier(WATCHERS + 1)
    lock = threading.Lock()

    def watch(i):
        port = ports[i % 3]
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("GET", f"/v1/catalog/service/fan?index={idx[i % 3]}&wait=60s")
        ready.wait()
        r = c.getresponse()
        r.read()
        t = time.time()
        with lock:
            woke.append(t)
    ts = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(WATCHERS)]
    for t in ts:
        t.start()
    ready.wait()
    time.sleep(2)  # every watcher's request has reached its replica and is waiting
    t0 = time.time()
    request(ports[0], "PUT", "/v1/catalog/register",
            json.dumps({"Node": "fan", "Address": "127.0.0.1", "Service": {"ID": "fan-1", "Service": "fan", "Port": 1}}))
    for t in ts:
        t.join(90)
    lat = [(w - t0) * 1000 for w in woke]
    results["fanout_watchers"] = WATCHERS
    results["fanout_woken"] = len(lat)
    results["fanout_ms_p50"] = round(pct(lat, 0.5), 1)
    results["fanout_ms_p99"] = round(pct(lat, 0.99), 1)
    results["fanout_ms_max"] = round(max(lat), 1) if lat else None

    # Writer failover: kill -9 the etcd leader; time until a write through replica 1 succeeds.
    leader = None
    for i, p in enumerate(etcd_ports):
        out = subprocess.run(["etcdctl", f"--endpoints=http://127.0.0.1:{p}", "endpoint", "status", "-w", "json"],
                             capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}).stdout
        s = json.loads(out)[0]["Status"]
        if s["header"]["member_id"] == s["leader"]:
            leader = i
    t0 = time.time()
    etcd_procs[leader].kill()
    n = 0
    while True:
        n += 1
        st = request(ports[1], "PUT", "/v1/catalog/register",
                     json.dumps({"Node": "fo", "Address": "127.0.0.1", "Service": {"ID": f"fo-{n}", "Service": "fo", "Port": 1}}))[0]
        if st == 200:
            break
        time.sleep(0.05)
    results["writer_failover_after_etcd_leader_kill_ms"] = round((time.time() - t0) * 1000)
    # ... and of a replica: a writer moving to another replica needs nothing but a new connection.
    replicas[0][0].kill()
    t0 = time.time()
    st = request(ports[2], "PUT", "/v1/catalog/register",
                 json.dumps({"Node": "fo", "Address": "127.0.0.1", "Service": {"ID": "fo-r", "Service": "fo", "Port": 1}}))[0]
    results["write_on_another_replica_after_replica_kill_ms"] = round((time.time() - t0) * 1000) if st == 200 else None
    for p, _ in replicas:
        p.kill()
    for p in etcd_procs:
        p.kill()

    # The embedded store, same clients.
    _, h = start_server("embedded", [])
    ok, err, el = load([h], SECS, register)
    results["embedded_writes_per_s"] = round(ok / el)
    print(json.dumps(results, indent=2))


try:
    main()
finally:
    cleanup()
