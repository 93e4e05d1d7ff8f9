"""Web UI benchmark (issue 20): page weight and time to first render of the services page with
N services, in Debian's headless chromium driven over WebDriver (chromedriver), each run with a
fresh profile (empty cache). Also the server's time for the page's one data request.

Usage: ui_bench.py <lambdamesh binary> [services=1000] [runs=5]. Prints one line per figure."""
import json, shutil, socket, statistics, subprocess, sys, tempfile, time, urllib.error, urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, method=method, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {url}: {e.code} {e.read().decode(errors='replace')}")


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    work = tempfile.mkdtemp()
    port, dport = free_port(), free_port()
    api = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([binary, "agent", "-dev", "-http-addr", f"127.0.0.1:{port}", "-grpc-addr",
                               "127.0.0.1:0", "-data-dir", f"{work}/data"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = None
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{api}/v1/status/leader", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        # N services, each with a check; every tenth a Lambda function (its service-defaults).
        for i in range(n):
            name = f"svc-{i:04d}"
            http("PUT", f"{api}/v1/catalog/register", {
                "Node": f"node-{i % 20}", "Address": "10.0.0.1",
                "Service": {"Service": name, "Port": 8000 + i % 1000, "Tags": ["v1", f"team-{i % 7}"]},
                "Checks": [{"CheckID": f"{name}-up", "ServiceID": name, "Status": "passing"}]})
            if i % 10 == 0:
                http("PUT", f"{api}/v1/config", {
                    "Kind": "service-defaults", "Name": name, "Protocol": "http", "EnvoyExtensions": [{
                        "Name": "builtin/aws/lambda", "Arguments": {
                            "ARN": f"arn:aws:lambda:us-east-1:123456789012:function:{name}"}}]})
        # The server's part: the page's one data request, 20 times.
        times = []
        for _ in range(20):
            t = time.perf_counter()
            with urllib.request.urlopen(f"{api}/v1/internal/ui/services", timeout=60) as r:
                body = r.read()
            times.append((time.perf_counter() - t) * 1000)
        print(f"server: GET /v1/internal/ui/services with {n} services: {len(body)} bytes, "
              f"median {statistics.median(times):.1f} ms (min {min(times):.1f})")

        driver = subprocess.Popen(["chromedriver", f"--port={dport}", "--allowed-ips=127.0.0.1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wd = f"http://127.0.0.1:{dport}"
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{wd}/status", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        weights, renders, fcps, rows = [], [], [], 0
        for _ in range(runs):
            profile = tempfile.mkdtemp()
            caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                         "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}"]}}}}
            sid = http("POST", f"{wd}/session", caps)["value"]["sessionId"]
            try:
                http("POST", f"{wd}/session/{sid}/url", {"url": f"{api}/ui/#/services"})
                deadline = time.time() + 60
                while True:
                    v = http("POST", f"{wd}/session/{sid}/execute/sync", {"args": [], "script": """
                        const m = performance.getEntriesByName('services-rendered')[0];
                        if (!m) return null;
                        const nav = performance.getEntriesByType('navigation')[0];
                        const res = performance.getEntriesByType('resource')
                          .filter(e => e.responseEnd > 0 && e.responseEnd <= m.startTime + 1);
                        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                        return {render: m.startTime, fcp: fcp ? fcp.startTime : null,
                          bytes: nav.transferSize + res.reduce((a, e) => a + e.transferSize, 0),
                          rows: document.querySelectorAll('tr[data-service]').length};"""})["value"]
                    if v:
                        break
                    if time.time() > deadline:
                        raise SystemExit("the services page did not render")
                    time.sleep(0.02)
                weights.append(v["bytes"])
                renders.append(v["render"])
                if v["fcp"] is not None:
                    fcps.append(v["fcp"])
                rows = v["rows"]
            finally:
                http("DELETE", f"{wd}/session/{sid}")
                shutil.rmtree(profile, ignore_errors=True)
        print(f"browser: services page with {rows} rows, {runs} cold loads: bytes transferred "
              f"{statistics.median(weights):.0f} (median), first full table at "
              f"{statistics.median(renders):.0f} ms median (min {min(renders):.0f}, max {max(renders):.0f}), "
              f"first contentful paint {statistics.median(fcps):.0f} ms median")
    finally:
        if driver:
            driver.kill()
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
