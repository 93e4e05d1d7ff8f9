//! The benchmark's Lambda function (`lambda_runtime`, deployed as a `provided.al2023`
//! `bootstrap`): answers the `aws_lambda` filter's request JSON with an HTTP response whose body
//! is the same echo the plain benchmark service returns (method, path, body).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
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
