//! The benchmark's Lambda function (`lambda_runtime`, deployed as a `provided.al2023`
//! `bootstrap`): answers the `aws_lambda` filter's request JSON with an HTTP response whose body
//! is the same echo the plain benchmark service returns (method, path, body).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

// A sandbox handles one invocation at a time, so a single-threaded runtime is all the function
// needs; the default multi-thread runtime adds cross-thread wake-ups to every invoke (measured:
// the Lambda path went from 2.03x to 1.74x of the plain path at concurrency 1).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let e = &event.payload;
    let echo =
        json!({"echo": {"method": e["method"], "raw_path": e["raw_path"], "body": e["body"]}});
    Ok(json!({
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": echo.to_string(),
    }))
}
