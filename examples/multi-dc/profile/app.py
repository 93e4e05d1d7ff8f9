"""`profile` in dc2: a Lambda function that reads a user from `users` in dc1 through the Lambda
extension (its upstream `users:dc1`, on localhost: USERS_DC1_URL), which carries the call over
mTLS through dc2's mesh gateway to dc1's."""

import json, os, urllib.error, urllib.request


def handler(event, context):
    user = (event or {}).get("user", "ann")
    url = f"{os.environ['USERS_DC1_URL']}/?user={user}"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return {"profile": json.load(r), "function": context.function_name}
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"users:dc1: HTTP {e.code}: {e.read().decode()[:200]}") from None
    except OSError as e:
        raise RuntimeError(f"users:dc1: {e}") from None
