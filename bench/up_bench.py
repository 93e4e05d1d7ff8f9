"""Driver of bench/up.sh: `lambdamesh up` of the greeter example, next to the same topology
without the Lambda side (no registrator, function, gateways or splitter: ingress → greeter).

For each: the time from starting `up` to `status` ready, then the RSS and CPU of every process
of the run (found as `up` finds them: its marker in the environment or a working directory in
the state directory, so Lambda sandboxes count) at idle and under an open-loop 50 req/s load on
`ingress`, with the answers' latency and how many came from Lambda.

Usage: up_bench.py LAMBDAMESH EXAMPLES_GREETER [seconds=20] [rate=50]
"""

import json, os, re, shutil, subprocess, sys, tempfile, threading, time, urllib.error, urllib.request

BIN, EXAMPLE = sys.argv[1], sys.argv[2]
SECONDS = int(sys.argv[3]) if len(sys.argv) > 3 else 20
RATE = int(sys.argv[4]) if len(sys.argv) > 4 else 50
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def run_pids(state):
    marker = f"LAMBDAMESH_UP_STATE={state}".encode()
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            env = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
            cwd = os.readlink(f"/proc/{p}/cwd")
        except OSError:
            continue
        if marker in env or (cwd + "/").startswith(state + "/"):
            out.append(int(p))
    return out


def sample(state):
    """(rss bytes, cpu seconds) summed over the run's processes."""
    rss = cpu = 0
    for p in run_pids(state):
        try:
            stat = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            cpu += (int(stat[11]) + int(stat[12])) / TICK
            rss += int(open(f"/proc/{p}/statm").read().split()[1]) * PAGE
        except OSError:
            pass
    return rss, cpu


def measure(state, seconds, during=None):
    """Mean RSS (MB) and CPU (% of one core) over `seconds`."""
    rss_samples = []
    _, cpu0 = sample(state)
    t0 = time.time()
    worker = threading.Thread(target=during) if during else None
    if worker:
        worker.start()
    while time.time() - t0 < seconds:
        rss, _ = sample(state)
        rss_samples.append(rss)
        time.sleep(1)
    if worker:
        worker.join()
    _, cpu1 = sample(state)
    took = time.time() - t0
    return sum(rss_samples) / len(rss_samples) / 1e6, (cpu1 - cpu0) / took * 100


def load(url, seconds, rate, results):
    """Open loop: one request every 1/rate s, each on a thread of its own."""
    def one():
        t = time.time()
        try:
            with urllib.request.urlopen(url, timeout=15) as r:
                body = r.read().decode()
                results.append((time.time() - t, r.status, "From lambda" in body))
        except urllib.error.HTTPError as e:
            results.append((time.time() - t, e.code, f"HTTP {e.code}: {e.read().decode()[:160]}"))
        except Exception as e:
            results.append((time.time() - t, 0, f"{type(e).__name__}: {e}"[:160]))
    threads = []
    start = time.time()
    for i in range(seconds * rate):
        delay = start + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        th = threading.Thread(target=one)
        th.start()
        threads.append(th)
    for th in threads:
        th.join()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


def bench(name, topology, work):
    state = os.path.realpath(tempfile.mkdtemp(prefix="up-bench-", dir=work))
    t0 = time.time()
    up = subprocess.Popen([BIN, "up", "--free-ports", "--state-dir", state, topology],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = None
    while time.time() - t0 < 300:
        o = subprocess.run([BIN, "status", "--json", "--state-dir", state], capture_output=True)
        if o.returncode == 0:
            record = json.loads(o.stdout)
            if record.get("ready"):
                break
        if up.poll() is not None:
            sys.exit(f"{name}: up exited {up.returncode}")
        time.sleep(0.05)
    ready = time.time() - t0
    ingress = record["endpoints"]["ingress"] + "/"
    for _ in range(20):  # warm: first invokes start sandboxes
        try:
            urllib.request.urlopen(ingress, timeout=15).read()
        except Exception:
            pass
    time.sleep(2)
    idle_rss, idle_cpu = measure(state, 10)
    results = []
    load_rss, load_cpu = measure(state, SECONDS, lambda: load(ingress, SECONDS, RATE, results))
    ok = [r for r in results if r[1] == 200]
    lam = [r for r in ok if r[2] is True]
    failures = {}
    for r in results:
        if r[1] != 200:
            failures[r[2]] = failures.get(r[2], 0) + 1
    procs = len(run_pids(state))
    subprocess.run([BIN, "down", "--purge", "--state-dir", state], capture_output=True)
    up.wait()
    print(f"| {name} | {ready:.1f} s | {procs} | {idle_rss:.0f} MB | {idle_cpu:.1f} % | "
          f"{load_rss:.0f} MB | {load_cpu:.0f} % | {len(ok)}/{len(results)} "
          f"({len(lam)} Lambda) | {pct([r[0] for r in ok], .5):.0f} / {pct([r[0] for r in ok], .99):.0f} ms |",
          flush=True)
    for why, n in sorted(failures.items(), key=lambda kv: -kv[1])[:5]:
        print(f"<!-- {name}: {n} failed: {why} -->", file=sys.stderr)


def main():
    work = tempfile.mkdtemp(prefix="up-bench-")
    try:
        copy = os.path.join(work, "greeter")
        shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns(".lambdamesh"))
        text = open(os.path.join(copy, "lambdamesh.hcl")).read()
        # The same topology without the Lambda side: drop the registrator, the function, the
        # gateways, the config entries and greeter-lambda's intentions.
        plain = re.sub(r'(?ms)^registrator \{.*?^\}\n|^function "greeter-lambda" \{.*?^\}\n|'
                       r'^gateway "[^"]+" \{.*?^\}\n|^config_entries = \[.*?^\]\n', "", text)
        plain = "\n".join(l for l in plain.splitlines() if "greeter-lambda" not in l) + "\n"
        open(os.path.join(copy, "plain.hcl"), "w").write(plain)
        print(f"| topology | up → ready | processes | RSS idle | CPU idle | RSS at {RATE} req/s | "
              f"CPU at {RATE} req/s | answers 200 | latency p50 / p99 |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        bench("greeter (with Lambda)", copy, work)
        bench("greeter without the Lambda side", os.path.join(copy, "plain.hcl"), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


main()
