//! Asynchronous invocation with AWS's semantics, through boto3 and awslambdaric: the
//! `FunctionEventInvokeConfig` API, retries, maximum event age, the invocation record sent to
//! `OnSuccess`/`OnFailure` destinations (SQS, a function, an EventBridge bus), the dead-letter
//! queue's message and attributes, and queued events surviving a restart.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::TestPlatform;

fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A handler that appends its request id to `$ATTEMPTS` and fails when the event says so.
const APP: &str = "import os, json\ndef handler(event, context):\n    with open(os.environ['ATTEMPTS'], 'a') as f:\n        f.write(context.aws_request_id + '\\n')\n    if event.get('fail'):\n        raise RuntimeError('failing on purpose')\n    return {'ok': event}\n";

/// Polls `f` for up to 20 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_invoke_config_api() {
    let p = TestPlatform::start().await;
    let out = p
        .boto3(
            r#"
lam.create_function(FunctionName="f", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                    Code={"ZipFile": zip_files({"app.py": "def handler(e, c): return e"})})
lam.publish_version(FunctionName="f")
lam.create_alias(FunctionName="f", Name="live", FunctionVersion="1")
q = "arn:aws:sqs:us-east-1:123456789012:failures"
put = lam.put_function_event_invoke_config(FunctionName="f", MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": q}})
got = lam.get_function_event_invoke_config(FunctionName="f")
upd = lam.update_function_event_invoke_config(FunctionName="f", MaximumEventAgeInSeconds=120)
alias = lam.put_function_event_invoke_config(FunctionName="f", Qualifier="live", MaximumRetryAttempts=0)
listed = lam.list_function_event_invoke_configs(FunctionName="f")["FunctionEventInvokeConfigs"]
replaced = lam.put_function_event_invoke_config(FunctionName="f", MaximumEventAgeInSeconds=60)
errors = {
    "retries": err(lam.put_function_event_invoke_config, FunctionName="f", MaximumRetryAttempts=3),
    "age": err(lam.put_function_event_invoke_config, FunctionName="f", MaximumEventAgeInSeconds=21601),
    "dest": err(lam.put_function_event_invoke_config, FunctionName="f",
                DestinationConfig={"OnFailure": {"Destination": "arn:aws:sns:us-east-1:123456789012:t"}}),
    "qualifier": err(lam.put_function_event_invoke_config, FunctionName="f", Qualifier="nope", MaximumRetryAttempts=0),
    "function": err(lam.get_function_event_invoke_config, FunctionName="missing"),
    "dlq": err(lam.update_function_configuration, FunctionName="f", DeadLetterConfig={"TargetArn": "arn:aws:sns:us-east-1:123456789012:t"}),
}
lam.delete_function_event_invoke_config(FunctionName="f", Qualifier="live")
errors["deleted"] = err(lam.get_function_event_invoke_config, FunctionName="f", Qualifier="live")
dlq = lam.update_function_configuration(FunctionName="f", DeadLetterConfig={"TargetArn": q})["DeadLetterConfig"]
def shape(c):
    return {"arn": c["FunctionArn"], "retries": c.get("MaximumRetryAttempts"), "age": c.get("MaximumEventAgeInSeconds"),
            "dest": c["DestinationConfig"], "modified": hasattr(c["LastModified"], "year")}
print(json.dumps({"put": shape(put), "got": shape(got), "upd": shape(upd), "alias": shape(alias),
                  "listed": sorted(c["FunctionArn"] for c in listed), "replaced": shape(replaced),
                  "errors": errors, "dlq": dlq,
                  "dlq_read": lam.get_function_configuration(FunctionName="f")["DeadLetterConfig"]}))
"#,
        )
        .await;
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:f";
    let q = "arn:aws:sqs:us-east-1:123456789012:failures";
    assert_eq!(
        out["put"],
        json!({"arn": format!("{arn}:$LATEST"), "retries": 1, "age": null,
               "dest": {"OnSuccess": {}, "OnFailure": {"Destination": q}}, "modified": true})
    );
    assert_eq!(out["got"], out["put"]);
    assert_eq!(
        out["upd"]["retries"], 1,
        "Update keeps what it does not send"
    );
    assert_eq!(out["upd"]["age"], 120);
    assert_eq!(out["upd"]["dest"]["OnFailure"]["Destination"], q);
    assert_eq!(out["alias"]["arn"], format!("{arn}:live"));
    assert_eq!(
        out["listed"],
        json!([format!("{arn}:$LATEST"), format!("{arn}:live")])
    );
    assert_eq!(
        out["replaced"],
        json!({"arn": format!("{arn}:$LATEST"), "retries": null, "age": 60,
               "dest": {"OnSuccess": {}, "OnFailure": {}}, "modified": true}),
        "Put replaces every member"
    );
    let e = &out["errors"];
    assert_eq!(e["retries"]["code"], "ValidationException", "{e}");
    assert!(
        e["retries"]["message"]
            .as_str()
            .unwrap()
            .contains("maximumRetryAttempts"),
        "{e}"
    );
    assert_eq!(e["age"]["code"], "ValidationException", "{e}");
    assert_eq!(e["dest"]["code"], "InvalidParameterValueException", "{e}");
    assert_eq!(e["qualifier"]["code"], "ResourceNotFoundException", "{e}");
    assert_eq!(e["function"]["code"], "ResourceNotFoundException", "{e}");
    assert_eq!(e["dlq"]["code"], "InvalidParameterValueException", "{e}");
    assert_eq!(e["deleted"]["code"], "ResourceNotFoundException", "{e}");
    assert!(
        e["deleted"]["message"]
            .as_str()
            .unwrap()
            .contains("doesn't have an EventInvokeConfig"),
        "{e}"
    );
    assert_eq!(out["dlq"], json!({"TargetArn": q}));
    assert_eq!(out["dlq_read"], out["dlq"]);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_reach_the_on_failure_destination_and_the_dead_letter_queue() {
    // One "minute" is 200 ms here: retries come 200 ms and 400 ms after a failure.
    let p = TestPlatform::start_with(|c| c.minute = Duration::from_millis(200)).await;
    let tmp = tempfile::tempdir().unwrap();
    let attempts = tmp.path().join("attempts");
    let recorded = tmp.path().join("recorded");
    let recorder = format!(
        "import json\ndef handler(event, context):\n    with open({path}, 'a') as f:\n        f.write(json.dumps(event) + '\\n')\n",
        path = lit(recorded.to_str().unwrap())
    );
    let out = p
        .boto3(&format!(
            r#"
sqs = boto3.client("sqs", **kw)
def queue(name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
fail_url, fail_arn = queue("failures")
dlq_url, dlq_arn = queue("dlq")
bus_url, bus_arn = queue("bus")
lam.create_function(FunctionName="flaky", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                    Code={{"ZipFile": zip_files({{"app.py": {app}}})}},
                    Environment={{"Variables": {{"ATTEMPTS": {attempts}}}}},
                    DeadLetterConfig={{"TargetArn": dlq_arn}})
rec = lam.create_function(FunctionName="recorder", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                    Code={{"ZipFile": zip_files({{"app.py": {recorder}}})}})["FunctionArn"]
events.put_rule(Name="results", EventPattern=json.dumps({{"source": ["lambda"]}}))
events.put_targets(Rule="results", Targets=[{{"Id": "q", "Arn": bus_arn}}])
lam.put_function_event_invoke_config(FunctionName="flaky", MaximumRetryAttempts=1,
    DestinationConfig={{"OnFailure": {{"Destination": fail_arn}},
                        "OnSuccess": {{"Destination": "arn:aws:events:us-east-1:123456789012:event-bus/default"}}}})
failed = lam.invoke(FunctionName="flaky", InvocationType="Event", Payload=json.dumps({{"fail": True, "k": 1}}).encode())
ok = lam.invoke(FunctionName="flaky", InvocationType="Event", Payload=json.dumps({{"k": 2}}).encode())
# A second function sends its successes to the recorder function.
lam.create_function(FunctionName="fine", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                    Code={{"ZipFile": zip_files({{"app.py": {app}}})}},
                    Environment={{"Variables": {{"ATTEMPTS": {attempts}}}}})
lam.put_function_event_invoke_config(FunctionName="fine", DestinationConfig={{"OnSuccess": {{"Destination": rec}}}})
fine = lam.invoke(FunctionName="fine", InvocationType="Event", Payload=b'{{"k": 3}}')
def take(url):
    end = time.time() + 20
    while time.time() < end:
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"])
        if r.get("Messages"):
            return r["Messages"][0]
    return None
failure = take(fail_url)
dead = take(dlq_url)
success = take(bus_url)
print(json.dumps({{"failed_id": failed["ResponseMetadata"]["RequestId"], "ok_id": ok["ResponseMetadata"]["RequestId"],
                   "fine_id": fine["ResponseMetadata"]["RequestId"],
                   "failure": json.loads(failure["Body"]), "dead_body": json.loads(dead["Body"]),
                   "dead_attrs": dead["MessageAttributes"], "success": json.loads(success["Body"])}}))
"#,
            app = lit(APP),
            attempts = lit(attempts.to_str().unwrap()),
            recorder = lit(&recorder),
        ))
        .await;
    let failed_id = out["failed_id"].as_str().unwrap();
    let flaky = "arn:aws:lambda:us-east-1:123456789012:function:flaky:$LATEST";

    // MaximumRetryAttempts 1: two runs of the failing event, under its request id.
    let runs = lines(&attempts);
    assert_eq!(
        runs.iter().filter(|l| *l == failed_id).count(),
        2,
        "one attempt and one retry: {runs:?}"
    );

    let f = &out["failure"];
    assert_eq!(f["version"], "1.0");
    assert_eq!(
        f["requestContext"],
        json!({"requestId": failed_id, "functionArn": flaky, "condition": "RetriesExhausted",
               "approximateInvokeCount": 2})
    );
    assert_eq!(f["requestPayload"], json!({"fail": true, "k": 1}));
    assert_eq!(
        f["responseContext"],
        json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"})
    );
    assert_eq!(f["responsePayload"]["errorMessage"], "failing on purpose");
    assert_eq!(f["responsePayload"]["errorType"], "RuntimeError");
    assert!(f["timestamp"].as_str().unwrap().ends_with('Z'), "{f}");

    // The dead-letter queue gets the event itself, with AWS's three attributes.
    assert_eq!(out["dead_body"], json!({"fail": true, "k": 1}));
    assert_eq!(
        out["dead_attrs"],
        json!({
            "RequestID": {"DataType": "String", "StringValue": failed_id},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {"DataType": "String", "StringValue": "failing on purpose"},
        })
    );

    // The success went to the event bus, whose rule put it on the "bus" queue.
    let s = &out["success"];
    assert_eq!(s["source"], "lambda");
    assert_eq!(
        s["detail-type"],
        "Lambda Function Invocation Result - Success"
    );
    assert_eq!(s["detail"]["requestContext"]["condition"], "Success");
    assert_eq!(s["detail"]["requestContext"]["requestId"], out["ok_id"]);
    assert_eq!(s["detail"]["requestPayload"], json!({"k": 2}));
    assert_eq!(s["detail"]["responsePayload"], json!({"ok": {"k": 2}}));
    assert!(
        s["detail"]["responseContext"]
            .get("functionError")
            .is_none()
    );

    // And "fine"'s success was an asynchronous invoke of the recorder function.
    eventually("the recorder function ran", || !lines(&recorded).is_empty()).await;
    let rec: Value = serde_json::from_str(&lines(&recorded)[0]).unwrap();
    assert_eq!(rec["requestContext"]["requestId"], out["fine_id"]);
    assert_eq!(rec["requestContext"]["condition"], "Success");
    assert_eq!(rec["responsePayload"], json!({"ok": {"k": 3}}));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_past_its_maximum_age_is_not_retried() {
    // 60 "seconds" (the least AWS allows) are 200 ms here; the retry would come 200 ms after
    // the first failure, when the event is already too old.
    let p = TestPlatform::start_with(|c| c.minute = Duration::from_millis(200)).await;
    let tmp = tempfile::tempdir().unwrap();
    let attempts = tmp.path().join("attempts");
    let out = p
        .boto3(&format!(
            r#"
sqs = boto3.client("sqs", **kw)
url = sqs.create_queue(QueueName="failures")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
lam.create_function(FunctionName="old", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                    Code={{"ZipFile": zip_files({{"app.py": {app}}})}},
                    Environment={{"Variables": {{"ATTEMPTS": {attempts}}}}})
lam.put_function_event_invoke_config(FunctionName="old", MaximumEventAgeInSeconds=60,
    DestinationConfig={{"OnFailure": {{"Destination": arn}}}})
lam.invoke(FunctionName="old", InvocationType="Event", Payload=b'{{"fail": true}}')
end = time.time() + 20
body = None
while body is None and time.time() < end:
    r = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    if r.get("Messages"):
        body = json.loads(r["Messages"][0]["Body"])
print(json.dumps(body))
"#,
            app = lit(APP),
            attempts = lit(attempts.to_str().unwrap()),
        ))
        .await;
    assert_eq!(
        out["requestContext"]["condition"], "EventAgeExceeded",
        "{out}"
    );
    assert_eq!(out["requestContext"]["approximateInvokeCount"], 1, "{out}");
    assert_eq!(lines(&attempts).len(), 1, "no retry of an expired event");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_events_and_their_attempts_survive_a_restart() {
    // Retries a "minute" (1 s) apart: the platform stops between the first attempt and the
    // retry, and the retry (the last one allowed) runs after the restart.
    let tmp = tempfile::tempdir().unwrap();
    let attempts = tmp.path().join("attempts");
    let mut config = lambda_platform::PlatformConfig::new(tmp.path().join("data"));
    config.python = crate::harness::python();
    config.minute = Duration::from_secs(1);
    let p = TestPlatform::start_in(config.clone()).await;
    p.boto3(&format!(
        r#"
lam.create_function(FunctionName="flaky", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                    Code={{"ZipFile": zip_files({{"app.py": {app}}})}},
                    Environment={{"Variables": {{"ATTEMPTS": {attempts}}}}})
lam.put_function_event_invoke_config(FunctionName="flaky", MaximumRetryAttempts=1)
lam.invoke(FunctionName="flaky", InvocationType="Event", Payload=b'{{"fail": true}}')
print("null")
"#,
        app = lit(APP),
        attempts = lit(attempts.to_str().unwrap()),
    ))
    .await;
    eventually("the first attempt", || lines(&attempts).len() == 1).await;
    p.stop().await;
    let p = TestPlatform::start_in(config).await;
    eventually("the retry after the restart", || {
        lines(&attempts).len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = lines(&attempts);
    assert_eq!(
        runs.len(),
        2,
        "the attempt used before the restart counts: {runs:?}"
    );
    assert_eq!(runs[0], runs[1], "both runs carry the event's request id");
    p.stop().await;
}
