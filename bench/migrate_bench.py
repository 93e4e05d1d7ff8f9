"""`lambdamesh migrate` rollback timing on the greeter example (bench/migrate.sh).

Starts the greeter with `up` on free ports, runs a load client (about 20 req/s from 4 threads
on ingress), and RUNS times: `migrate greeter --to greeter-lambda --steps 50,100 --interval 5s`,
then, once step 1 is applied, makes the function fail every invocation (GREETER_FAIL_RATE=1 via
UpdateFunctionConfiguration). For each rollback it reports
  - judgement → splitter at 0 %: measured by `migrate` itself around its check-and-set write
    ("splitter written in N ms");
  - splitter at 0 % → the ingress sidecar's Envoy routing 0 % to greeter-lambda: two pollers
    (every 10 ms) of the splitter (`GET /v1/config/service-splitter/greeter`) and of Envoy's
    route configuration (admin `/config_dump?resource=dynamic_listeners`: the routes are inline in its upstream listener);
and the machine's load average. Usage: migrate_bench.py BIN TOPOLOGY RUNS
"""

import json, os, re, subprocess, sys, tempfile, threading, time, urllib.request

import boto3

BIN, TOPOLOGY, RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3])


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def lambda_weight_in_envoy(admin):
    dump = json.loads(get(admin + "/config_dump?resource=dynamic_listeners"))
    found = []

    def walk(v):
        if isinstance(v, dict):
            wc = v.get("weighted_clusters")
            if isinstance(wc, dict):
                total = sum(int(c.get("weight", 0)) for c in wc.get("clusters", []))
                for c in wc.get("clusters", []):
                    if c.get("name", "").startswith("greeter-lambda."):
                        found.append(int(c.get("weight", 0)) / max(total, 1))
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    # Only the listeners in use: a replaced one keeps its old routes while it drains.
    # (`?resource=dynamic_listeners` lists DynamicListener objects directly.)
    for listener in dump.get("configs", []):
        walk(listener.get("active_state", {}))
    return max(found) if found else 0.0


def splitter_weight(http):
    e = json.loads(get(f"{http}/v1/config/service-splitter/greeter"))
    return sum(s["Weight"] for s in e["Splits"] if s.get("Service") == "greeter-lambda")


def main():
    state = tempfile.mkdtemp(prefix="migrate-bench-")
    up = subprocess.Popen([BIN, "up", "--free-ports", "--state-dir", state, TOPOLOGY],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while True:
            o = subprocess.run([BIN, "status", "--json", "--state-dir", state], capture_output=True)
            if o.returncode == 0 and json.loads(o.stdout).get("ready"):
                eps = json.loads(o.stdout)["endpoints"]
                break
            if up.poll() is not None or time.time() - t0 > 300:
                sys.exit("up did not become ready")
            time.sleep(0.2)
        http, admin = eps["http"], eps["sidecar ingress admin"]
        ingress = eps["ingress"] + "/"
        aws = boto3.client("lambda", endpoint_url=eps["lambda"], region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")

        def fail_rate(rate):
            env = aws.get_function_configuration(FunctionName="greeter-lambda")["Environment"]["Variables"]
            env["GREETER_FAIL_RATE"] = rate
            aws.update_function_configuration(FunctionName="greeter-lambda",
                                               Environment={"Variables": env})
            while aws.get_function_configuration(FunctionName="greeter-lambda")["LastUpdateStatus"] != "Successful":
                time.sleep(0.05)

        stop = threading.Event()

        def client():
            while not stop.is_set():
                t = time.time()
                try:
                    get(ingress, timeout=15)
                except Exception:
                    pass
                time.sleep(max(0, 0.2 - (time.time() - t)))

        threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        env = dict(os.environ, CONSUL_HTTP_ADDR=http.removeprefix("http://"))
        print("| run | load avg (1 min) | judgement → splitter at 0 % | splitter at 0 % → ingress Envoy at 0 % | judgement → Envoy | rollback line |")
        print("| --- | --- | --- | --- | --- | --- |")
        for run in range(1, RUNS + 1):
            fail_rate("0")
            m = subprocess.Popen([BIN, "migrate", "greeter", "--to", "greeter-lambda", "--steps", "50,100",
                                  "--interval", "5s", "--min-requests", "5", "--max-p99", "5s"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            lines = []
            for line in m.stdout:
                lines.append(line.rstrip())
                if line.startswith("step 1/2"):
                    break
            seen = {}

            def poll(name, f):
                # Armed once it sees greeter-lambda's share above 0 (step 1 applied), then
                # records the first moment it is 0 again.
                armed, deadline = False, time.time() + 60
                while time.time() < deadline:
                    try:
                        w = f()
                        if w > 0:
                            armed = True
                        elif armed:
                            seen[name] = time.monotonic()
                            return
                    except Exception:
                        pass
                    time.sleep(0.01)

            started = time.time()
            pollers = [threading.Thread(target=poll, args=("splitter", lambda: splitter_weight(http))),
                       threading.Thread(target=poll, args=("envoy", lambda: lambda_weight_in_envoy(admin)))]
            for p in pollers:
                p.start()
            fail_rate("1")
            for line in m.stdout:
                lines.append(line.rstrip())
            m.wait()
            for p in pollers:
                p.join()
            rolled = [l for l in lines if l.startswith("rolled back")]
            took = re.search(r"splitter written in (\d+) ms", rolled[0]).group(1) if rolled else "?"
            load = open("/proc/loadavg").read().split()[0]
            if "splitter" in seen and "envoy" in seen:
                apply_ms = (seen["envoy"] - seen["splitter"]) * 1000
                total = f"{int(took) + apply_ms:.0f} ms" if took != "?" else "?"
                apply = f"{apply_ms:.0f} ms"
            else:
                apply = total = "not seen"
            reason = rolled[0].split(": ", 1)[1].split(" (target")[0] if rolled else f"exit {m.returncode}: {lines[-1:]}"
            print(f"| {run} | {load} | {took} ms | {apply} | {total} | {reason} |", flush=True)
        stop.set()
    finally:
        subprocess.run([BIN, "down", "--purge", "--state-dir", state], capture_output=True)
        up.wait()


main()
