"""The seeds' `authentication` function: a Lambda handler that the mesh invokes through a
terminating gateway. It answers with what it was asked, so you can see Envoy's request JSON."""

import json


def handler(event, context):
    user = (event.get("query_string_parameters") or {}).get("user", "anonymous")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-served-by": "lambda"},
        "body": json.dumps(
            {
                "authenticated": user != "anonymous",
                "user": user,
                "function": context.function_name,
                "version": context.function_version,
                "request": {"method": event["method"], "path": event["raw_path"]},
            }
        ),
    }
