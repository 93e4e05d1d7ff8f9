"""`greeter-lambda`: the greeter as a Lambda function. It reaches `name` and `greeting` on
localhost through the Lambda extension layer, which carries the calls over mTLS through the mesh
gateway (NAME_URL, GREETING_URL: set by `up` from the function's extension upstreams). With
payload passthrough the answer string is the HTTP body the caller gets.

Two switches for trying `lambdamesh migrate` (README, "Migrate with one command"), set in the
function's environment: GREETER_FAIL_RATE=0.3 fails that share of invocations (a function error,
which the caller sees as a 502), GREETER_SLEEP_MS=1500 answers that much later."""

import json, os, random, time, urllib.error, urllib.request


def fetch(what, url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{what}: HTTP {e.code}: {e.read().decode()[:200]}") from None
    except OSError as e:
        raise RuntimeError(f"{what}: {e}") from None


def handler(event, context):
    sleep_ms = float(os.environ.get("GREETER_SLEEP_MS") or 0)
    if sleep_ms > 0:
        time.sleep(sleep_ms / 1000)
    if random.random() < float(os.environ.get("GREETER_FAIL_RATE") or 0):
        raise RuntimeError("failing on purpose (GREETER_FAIL_RATE)")
    g = fetch("greeting", os.environ["GREETING_URL"])
    n = fetch("name", os.environ["NAME_URL"])
    return f"From lambda: {g['greeting']} ({g['host']}) {n['name']} ({n['host']})"
