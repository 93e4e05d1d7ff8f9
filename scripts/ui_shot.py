"""Screenshots of UI pages through chromedriver, each taken once the page says its data is in
(`main[data-loaded]`) and the watches have settled. Usage:
ui_shot.py BASE_URL OUT_DIR name=route@WxH ...   (used by scripts/ui-screenshots.sh)"""
import base64, json, shutil, socket, subprocess, sys, tempfile, time, urllib.error, urllib.request


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, method=method, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)["value"]
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {url}: {e.code} {e.read().decode(errors='replace')}")


def main():
    base, out, shots = sys.argv[1], sys.argv[2], sys.argv[3:]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    driver = subprocess.Popen(["chromedriver", f"--port={port}", "--allowed-ips=127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wd = f"http://127.0.0.1:{port}"
    profile = tempfile.mkdtemp()
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{wd}/status", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        for shot in shots:
            name, rest = shot.split("=", 1)
            route, size = rest.rsplit("@", 1)
            w, h = size.split("x")
            caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                         "--no-first-run", f"--window-size={w},{h}", f"--user-data-dir={profile}-{name}"]}}}}
            sid = call("POST", f"{wd}/session", caps)["sessionId"]
            try:
                # The viewport itself at WxH (a window size counts the browser's own frame).
                call("POST", f"{wd}/session/{sid}/goog/cdp/execute", {
                    "cmd": "Emulation.setDeviceMetricsOverride",
                    "params": {"width": int(w), "height": int(h), "deviceScaleFactor": 1,
                               "mobile": int(w) < 700}})
                call("POST", f"{wd}/session/{sid}/url", {"url": f"{base}/ui/#/{route}"})
                deadline = time.time() + 30
                while not call("POST", f"{wd}/session/{sid}/execute/sync",
                               {"script": "return !!document.getElementById('main').dataset.loaded;", "args": []}):
                    if time.time() > deadline:
                        raise SystemExit(f"{name}: the page did not load")
                    time.sleep(0.05)
                time.sleep(1.0)  # the page's other watches (instances, intentions, mesh gateways)
                png = base64.b64decode(call("GET", f"{wd}/session/{sid}/screenshot"))
                with open(f"{out}/{name}.png", "wb") as f:
                    f.write(png)
                print(f"{out}/{name}.png {len(png)} bytes")
            finally:
                call("DELETE", f"{wd}/session/{sid}")
                shutil.rmtree(f"{profile}-{name}", ignore_errors=True)
    finally:
        driver.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
