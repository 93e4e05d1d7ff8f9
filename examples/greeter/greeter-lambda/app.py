"""`greeter-lambda`: the greeter as a Lambda function. It reaches `name` and `greeting` on
localhost through the Lambda extension layer, which carries the calls over mTLS through the mesh
gateway (NAME_URL, GREETING_URL: set by `up` from the function's extension upstreams). With
payload passthrough the answer string is the HTTP body the caller gets."""

import json, os, urllib.error, urllib.request


def fetch(what, url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{what}: HTTP {e.code}: {e.read().decode()[:200]}") from None
    except OSError as e:
        raise RuntimeError(f"{what}: {e}") from None


def handler(event, context):
    g = fetch("greeting", os.environ["GREETING_URL"])
    n = fetch("name", os.environ["NAME_URL"])
    return f"From lambda: {g['greeting']} ({g['host']}) {n['name']} ({n['host']})"
