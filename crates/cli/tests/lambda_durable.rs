//! Nothing the local Lambda platform accepted is lost in a crash: a real `lambdamesh lambda
//! serve` process takes `Event` invokes, EventBridge events and SQS messages from boto3 (an
//! independent client), is killed with SIGKILL while most of them are still queued, and after a
//! restart on the same data dir every event runs (awslambdaric) and every message not deleted is
//! there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use common::BIN;
use common::mesh::{Guard, free_port, python, wait_until};
use serde_json::Value;

/// `lambdamesh lambda serve` on `port` with `data` (sandboxes not frozen: a SIGKILLed
/// platform must not leave stopped children behind).
fn serve(data: &Path, port: u16) -> Guard {
    let g = Guard(
        Command::new(BIN)
            .args(["lambda", "serve", "-addr", &format!("127.0.0.1:{port}")])
            .args(["-data-dir", data.to_str().unwrap(), "-python", &python()])
            .arg("-freeze=false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(30, "the platform listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    g
}

/// Runs a boto3 script against `endpoint`; it prints one JSON document as its last line.
fn boto3(endpoint: &str, script: &str) -> Value {
    let preamble = format!(
        r#"
import boto3, json, io, zipfile, os, time
from botocore.config import Config
kw = dict(endpoint_url="{endpoint}", region_name="us-east-1", aws_access_key_id="test",
          aws_secret_access_key="test", config=Config(retries={{"max_attempts": 1}}))
lam = boto3.client("lambda", **kw)
sqs = boto3.client("sqs", **kw)
events = boto3.client("events", **kw)
def zip_files(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()
"#
    );
    let out = Command::new(python())
        .arg("-c")
        .arg(format!("{preamble}\n{script}"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "boto3 script failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap()
}

#[test]
fn accepted_events_and_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ran = dir.path().join("ran");
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut platform = serve(&data, port);

    // One event at a time (reserved concurrency 1), each a fifth of a second: when the platform
    // is killed, nearly all of the 40 are still queued.
    let app = format!(
        "import time\ndef handler(event, context):\n    with open({ran:?}, 'a') as f:\n        f.write(str(event['n']) + ' ' + context.aws_request_id + '\\n')\n    time.sleep(0.2)\n    return event\n",
        ran = ran.to_str().unwrap()
    );
    let accepted = boto3(
        &endpoint,
        &format!(
            r#"
lam.create_function(FunctionName="worker", Runtime="python3.11", Handler="app.handler",
    Role="arn:aws:iam::123456789012:role/lambda", Code={{"ZipFile": zip_files({{"app.py": {app:?}}})}})
lam.put_function_concurrency(FunctionName="worker", ReservedConcurrentExecutions=1)
url = sqs.create_queue(QueueName="work")["QueueUrl"]
bus_url = sqs.create_queue(QueueName="from-bus")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=bus_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
events.put_rule(Name="orders", EventPattern=json.dumps({{"source": ["shop"]}}))
events.put_targets(Rule="orders", Targets=[{{"Id": "q", "Arn": arn}}])
for i in range(20):
    sqs.send_message(QueueUrl=url, MessageBody="m%d" % i)
# Two received and deleted, three received and left in flight.
got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5, VisibilityTimeout=600)["Messages"]
for m in got[:2]:
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
deleted = [m["Body"] for m in got[:2]]
for i in range(5):
    r = events.put_events(Entries=[{{"Source": "shop", "DetailType": "order", "Detail": json.dumps({{"order": i}})}}])
    assert r["FailedEntryCount"] == 0
ids = []
for i in range(40):
    r = lam.invoke(FunctionName="worker", InvocationType="Event", Payload=json.dumps({{"n": i}}).encode())
    assert r["StatusCode"] == 202, r
    ids.append(r["ResponseMetadata"]["RequestId"])
print(json.dumps({{"deleted": deleted, "ids": ids}}))
"#
        ),
    );
    // SIGKILL right after the last 202: no shutdown, no flush.
    platform.0.kill().unwrap();
    platform.0.wait().unwrap();
    let before: usize = std::fs::read_to_string(&ran)
        .unwrap_or_default()
        .lines()
        .count();
    assert!(
        before < 40,
        "the crash came before the queue drained ({before} ran)"
    );

    let _platform = serve(&data, port);
    let runs = || -> Vec<(u32, String)> {
        std::fs::read_to_string(&ran)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (n, id) = l.split_once(' ')?;
                Some((n.parse().ok()?, id.to_owned()))
            })
            .collect()
    };
    wait_until(60, "every accepted event ran", || {
        runs()
            .iter()
            .map(|(n, _)| *n)
            .collect::<BTreeSet<_>>()
            .len()
            == 40
    });
    let runs = runs();
    let ns: BTreeSet<u32> = runs.iter().map(|(n, _)| *n).collect();
    assert_eq!(ns, (0..40).collect(), "every one of the 40 ran");
    // Each ran under the request id its 202 carried (an event interrupted by the crash may
    // have run twice: at least once, as on AWS).
    let ids: BTreeSet<String> = accepted["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let ran_ids: BTreeSet<String> = runs.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ran_ids, ids);

    let after = boto3(
        &endpoint,
        r#"
def drain(name):
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    bodies = []
    while True:
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        if not r.get("Messages"):
            break
        for m in r["Messages"]:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies
print(json.dumps({"work": drain("work"), "bus": [json.loads(b)["detail"]["order"] for b in drain("from-bus")]}))
"#,
    );
    let work: BTreeSet<String> = after["work"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let deleted: BTreeSet<String> = accepted["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = (0..20)
        .map(|i| format!("m{i}"))
        .filter(|m| !deleted.contains(m))
        .collect();
    assert_eq!(
        work, expected,
        "every message sent and not deleted is back, in-flight ones visible again"
    );
    let mut bus: Vec<u64> = after["bus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    bus.sort_unstable();
    assert_eq!(bus, [0, 1, 2, 3, 4], "every event put reached its queue");
}
