//! Parameter Store, the Resource Groups Tagging API and events, through boto3.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{PY_APP, TestPlatform};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_store_with_limits_and_encryption_at_rest() {
    let p = TestPlatform::start().await;
    let out = p
        .boto3(
            r#"
out = {}
out["put"] = ssm.put_parameter(Name="/mesh/fn/cert", Value="s3cr3t-pem", Type="SecureString")
ssm.put_parameter(Name="/mesh/fn/name", Value="greeter", Type="String")
ssm.put_parameter(Name="/mesh/other/deep/x", Value="a,b", Type="StringList")
ssm.put_parameter(Name="/mesh/big", Value="x" * 5000, Type="SecureString", Tier="Advanced")
out["exists"] = err(ssm.put_parameter, Name="/mesh/fn/name", Value="v2", Type="String")
out["overwrite"] = ssm.put_parameter(Name="/mesh/fn/name", Value="v2", Overwrite=True)["Version"]
out["std_too_big"] = err(ssm.put_parameter, Name="/mesh/toobig", Value="x" * 5000, Type="String")
out["adv_too_big"] = err(ssm.put_parameter, Name="/mesh/toobig", Value="x" * 9000, Type="String", Tier="Advanced")
out["bad_type"] = err(ssm.put_parameter, Name="/mesh/t", Value="x", Type="Nope")
out["bad_name"] = err(ssm.put_parameter, Name="mesh/rel", Value="x", Type="String")
out["reserved"] = err(ssm.put_parameter, Name="/aws/x", Value="x", Type="String")
out["deep"] = err(ssm.put_parameter, Name="/a" * 16, Value="x", Type="String")
out["enc"] = ssm.get_parameter(Name="/mesh/fn/cert")["Parameter"]["Value"]
out["dec"] = ssm.get_parameter(Name="/mesh/fn/cert", WithDecryption=True)["Parameter"]
out["missing"] = err(ssm.get_parameter, Name="/nope")
out["many"] = ssm.get_parameters(Names=["/mesh/fn/name", "/nope"])
out["path"] = sorted(x["Name"] for x in ssm.get_parameters_by_path(Path="/mesh/fn")["Parameters"])
rec = []
for page in ssm.get_paginator("get_parameters_by_path").paginate(Path="/mesh", Recursive=True, WithDecryption=True, PaginationConfig={"PageSize": 1}):
    rec += [x["Name"] for x in page["Parameters"]]
out["recursive"] = rec
out["describe"] = [x["Name"] for x in ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": ["/mesh/fn"]}])["Parameters"]]
for v in ["h1", "h2", "h3"]:
    ssm.put_parameter(Name="/hist/p", Value=v, Type="SecureString", Overwrite=True)
out["history"] = [(x["Version"], x["Value"]) for x in ssm.get_parameter_history(Name="/hist/p", WithDecryption=True)["Parameters"]]
hp = []
for page in ssm.get_paginator("get_parameter_history").paginate(Name="/hist/p", PaginationConfig={"PageSize": 2}):
    hp += [x["Version"] for x in page["Parameters"]]
out["history_paged"] = hp
out["selector"] = ssm.get_parameter(Name="/hist/p:1", WithDecryption=True)["Parameter"]["Value"]
out["bad_selector"] = err(ssm.get_parameter, Name="/hist/p:9")
ssm.delete_parameter(Name="/mesh/fn/name")
out["delete_again"] = err(ssm.delete_parameter, Name="/mesh/fn/name")
out["delete_many"] = ssm.delete_parameters(Names=["/mesh/big", "/nope"])
print(json.dumps(out, default=str))
"#,
        )
        .await;
    assert_eq!(out["put"]["Version"], 1);
    assert_eq!(out["put"]["Tier"], "Standard");
    let code = |k: &str| out[k]["code"].as_str().unwrap_or_default().to_owned();
    assert_eq!(code("exists"), "ParameterAlreadyExists");
    assert_eq!(out["overwrite"], 2);
    assert_eq!(code("std_too_big"), "ValidationException");
    assert!(
        out["std_too_big"]["message"]
            .as_str()
            .unwrap()
            .contains("4096")
    );
    assert_eq!(code("adv_too_big"), "ValidationException");
    assert_eq!(code("bad_type"), "ValidationException");
    assert_eq!(code("bad_name"), "ValidationException");
    assert_eq!(code("reserved"), "ValidationException");
    assert_eq!(code("deep"), "HierarchyLevelLimitExceededException");
    assert_eq!(code("missing"), "ParameterNotFound");
    assert_eq!(out["missing"]["status"], 400);
    assert_ne!(out["enc"], "s3cr3t-pem");
    assert_eq!(out["dec"]["Value"], "s3cr3t-pem");
    assert_eq!(
        out["dec"]["ARN"],
        "arn:aws:ssm:us-east-1:123456789012:parameter/mesh/fn/cert"
    );
    assert_eq!(out["many"]["InvalidParameters"], json!(["/nope"]));
    assert_eq!(out["path"], json!(["/mesh/fn/cert", "/mesh/fn/name"]));
    assert_eq!(
        out["recursive"],
        json!([
            "/mesh/big",
            "/mesh/fn/cert",
            "/mesh/fn/name",
            "/mesh/other/deep/x"
        ])
    );
    assert_eq!(out["describe"], json!(["/mesh/fn/cert", "/mesh/fn/name"]));
    assert_eq!(out["history"], json!([[1, "h1"], [2, "h2"], [3, "h3"]]));
    assert_eq!(out["history_paged"], json!([1, 2, 3]));
    assert_eq!(out["selector"], "h1");
    assert_eq!(code("bad_selector"), "ParameterVersionNotFound");
    assert_eq!(code("delete_again"), "ParameterNotFound");
    assert_eq!(
        out["delete_many"]["DeletedParameters"],
        json!(["/mesh/big"])
    );
    // Encrypted at rest: the secret never appears in the data dir.
    let dir = p.data_dir.join("ssm/params");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty());
    for f in files {
        let stored = std::fs::read_to_string(&f).unwrap();
        assert!(!stored.contains("s3cr3t-pem"), "{stored}");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagging_get_resources_filters_by_tag_key_and_pages() {
    let p = TestPlatform::start().await;
    let out = p
        .boto3(
            r#"
code = zip_files({"app.py": "def handler(e, c): return e"})
K = "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled"
for i in range(130):
    tags = {K: "true"} if i % 2 == 0 else {"other": "x"}
    lam.create_function(FunctionName=f"t{i:03d}", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={"ZipFile": code}, Tags=tags)
lam.create_function(FunctionName="untagged", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={"ZipFile": code})
first = tagging.get_resources(TagFilters=[{"Key": K}], ResourceTypeFilters=["lambda:function"])
arns = []
for page in tagging.get_paginator("get_resources").paginate(TagFilters=[{"Key": K}], ResourceTypeFilters=["lambda:function"], ResourcesPerPage=20):
    arns += [r["ResourceARN"] for r in page["ResourceTagMappingList"]]
out = {"first": len(first["ResourceTagMappingList"]), "token": first["PaginationToken"] != "", "all": len(arns), "unique": len(set(arns)),
       "sample": first["ResourceTagMappingList"][0],
       "by_value": len(tagging.get_resources(TagFilters=[{"Key": "other", "Values": ["x"]}])["ResourceTagMappingList"]),
       "other_type": len(tagging.get_resources(ResourceTypeFilters=["ec2:instance"])["ResourceTagMappingList"]),
       "bad_page": err(tagging.get_resources, ResourcesPerPage=500)}
print(json.dumps(out))
"#,
        )
        .await;
    assert_eq!(out["first"], 65, "{out}");
    assert_eq!(out["token"], false);
    assert_eq!(out["all"], 65);
    assert_eq!(out["unique"], 65);
    assert_eq!(
        out["sample"]["ResourceARN"],
        "arn:aws:lambda:us-east-1:123456789012:function:t000"
    );
    assert_eq!(
        out["sample"]["Tags"][0]["Key"],
        "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled"
    );
    assert_eq!(out["by_value"], 65);
    assert_eq!(out["other_type"], 0);
    assert_eq!(out["bad_page"]["code"], "InvalidParameterException");
    p.stop().await;
}

const SINK: &str = r#"
import json, os
def handler(event, context):
    with open(os.environ["SINK_OUT"], "a") as f:
        f.write(json.dumps(event) + "\n")
    return "ok"
"#;

async fn wait_lines(
    path: &std::path::Path,
    n: usize,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..150 {
        let lines: Vec<Value> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= n && pred(&lines) {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "expected {n} events in {}: {:?}",
        path.display(),
        std::fs::read_to_string(path)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_events_and_schedules_reach_a_target_function() {
    let p = TestPlatform::start_with(|c| c.minute = Duration::from_millis(500)).await;
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink.jsonl");
    let script = format!(
        r#"
sink = lam.create_function(FunctionName="sink", Runtime="python3.11", Role=ROLE, Handler="app.handler",
    Code={{"ZipFile": zip_files({{"app.py": {sink_src}}})}}, Environment={{"Variables": {{"SINK_OUT": {sink_path}}}}})["FunctionArn"]
pattern = {{"source": ["aws.lambda"], "detail-type": ["AWS API Call via CloudTrail"],
           "detail": {{"eventSource": ["lambda.amazonaws.com"], "eventName": ["CreateFunction20150331", "TagResource20170331v2", "UntagResource20170331v2"]}}}}
arn = events.put_rule(Name="registrator", EventPattern=json.dumps(pattern))["RuleArn"]
events.put_targets(Rule="registrator", Targets=[{{"Id": "1", "Arn": sink}}])
out = {{"rule_arn": arn}}
out["bad_pattern"] = err(events.put_rule, Name="bad", EventPattern='{{"source": "aws.lambda"}}')
out["bad_schedule"] = err(events.put_rule, Name="bad", ScheduleExpression="rate(1 minutes)")
out["test_pattern"] = events.test_event_pattern(EventPattern=json.dumps({{"source": ["x"]}}), Event=json.dumps({{"id": "1", "source": "x", "detail-type": "d", "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [], "detail": {{}}}}))["Result"]
fn = lam.create_function(FunctionName="watched", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={{"ZipFile": zip_files({{"app.py": {app}}})}})["FunctionArn"]
lam.tag_resource(Resource=fn, Tags={{"serverless.consul.hashicorp.com/v1alpha1/lambda/enabled": "true"}})
out["dup"] = err(lam.create_function, FunctionName="watched", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={{"ZipFile": zip_files({{"app.py": "x"}})}})
lam.invoke(FunctionName="watched", Payload=b"{{}}")
events.put_rule(Name="custom", EventPattern=json.dumps({{"source": ["my.app"], "detail": {{"kind": ["hello"]}}}}))
events.put_targets(Rule="custom", Targets=[{{"Id": "c", "Arn": sink}}])
out["put_events"] = events.put_events(Entries=[
    {{"Source": "my.app", "DetailType": "greeting", "Detail": json.dumps({{"kind": "hello"}})}},
    {{"Source": "my.app", "DetailType": "greeting", "Detail": json.dumps({{"kind": "bye"}})}},
    {{"Source": "my.app", "DetailType": "greeting", "Detail": "not json"}}])
events.put_rule(Name="tick", ScheduleExpression="rate(1 minute)")
events.put_targets(Rule="tick", Targets=[{{"Id": "t", "Arn": sink}}])
print(json.dumps(out))
"#,
        sink_src = serde_json::to_string(SINK).unwrap(),
        sink_path = serde_json::to_string(sink.to_str().unwrap()).unwrap(),
        app = serde_json::to_string(PY_APP).unwrap(),
    );
    let out = p.boto3(&script).await;
    assert_eq!(
        out["rule_arn"],
        "arn:aws:events:us-east-1:123456789012:rule/registrator"
    );
    assert_eq!(out["bad_pattern"]["code"], "InvalidEventPatternException");
    assert_eq!(out["bad_schedule"]["code"], "ValidationException");
    assert_eq!(out["test_pattern"], true);
    let lines = wait_lines(&sink, 5, |l| {
        l.iter().any(|e| e["source"] == "aws.events")
            && l.iter().any(|e| e["source"] == "my.app")
            && l.iter().filter(|e| e["source"] == "aws.lambda").count() >= 3
    })
    .await;
    let trail: Vec<&Value> = lines
        .iter()
        .filter(|e| e["source"] == "aws.lambda")
        .collect();
    assert_eq!(
        trail.len(),
        3,
        "only CreateFunction (twice) and TagResource of 'watched' match: {lines:?}"
    );
    let failed = trail
        .iter()
        .find(|e| !e["detail"]["errorCode"].is_null())
        .unwrap();
    assert_eq!(failed["detail"]["errorCode"], "ResourceConflictException");
    assert_eq!(failed["detail"]["eventName"], "CreateFunction20150331");
    assert!(
        failed["detail"]["requestParameters"]["code"].is_null(),
        "code is never logged"
    );
    let create = trail
        .iter()
        .find(|e| {
            e["detail"]["eventName"] == "CreateFunction20150331"
                && e["detail"]["errorCode"].is_null()
        })
        .unwrap();
    assert_eq!(create["detail-type"], "AWS API Call via CloudTrail");
    assert_eq!(
        create["detail"]["responseElements"]["functionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:watched"
    );
    assert_eq!(
        create["detail"]["requestParameters"]["functionName"],
        "watched"
    );
    assert!(create["detail"]["errorCode"].is_null());
    let tag = trail
        .iter()
        .find(|e| e["detail"]["eventName"] == "TagResource20170331v2")
        .unwrap();
    assert_eq!(
        tag["detail"]["requestParameters"]["resource"],
        "arn:aws:lambda:us-east-1:123456789012:function:watched"
    );
    assert_eq!(
        tag["detail"]["requestParameters"]["tags"]["serverless.consul.hashicorp.com/v1alpha1/lambda/enabled"],
        "true"
    );
    assert_eq!(out["put_events"]["FailedEntryCount"], 1);
    let custom: Vec<&Value> = lines.iter().filter(|e| e["source"] == "my.app").collect();
    assert_eq!(
        custom.len(),
        1,
        "only the matching custom event is delivered: {custom:?}"
    );
    assert_eq!(custom[0]["detail"]["kind"], "hello");
    assert_eq!(custom[0]["detail-type"], "greeting");
    let tick = lines.iter().find(|e| e["source"] == "aws.events").unwrap();
    assert_eq!(tick["detail-type"], "Scheduled Event");
    assert_eq!(
        tick["resources"][0],
        "arn:aws:events:us-east-1:123456789012:rule/tick"
    );
    p.stop().await;
}

/// A sink that records which version ran each event.
const VERSION_SINK: &str = r#"
import json, os
def handler(event, context):
    with open(os.environ["SINK_OUT"], "a") as f:
        f.write(json.dumps({"version": context.function_version, "arn": context.invoked_function_arn, "event": event}) + "\n")
    return context.function_version
"#;

/// An alias whose `RoutingConfig` sends all traffic (weight 1.0) to its additional version must
/// run that version whoever invokes it: a synchronous Invoke, an `Event` Invoke and an
/// EventBridge rule whose target is the alias ARN. The weight makes the choice certain, so the
/// test never depends on a random roll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_alias_routing_applies_to_every_kind_of_invoke() {
    let p = TestPlatform::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink.jsonl");
    let script = format!(
        r#"
code = {{"ZipFile": zip_files({{"app.py": {sink_src}}})}}
fn = lam.create_function(FunctionName="weighted", Runtime="python3.11", Role=ROLE, Handler="app.handler",
    Code=code, Environment={{"Variables": {{"SINK_OUT": {sink_path}}}}}, Publish=True)["FunctionArn"]
lam.update_function_configuration(FunctionName="weighted", Environment={{"Variables": {{"SINK_OUT": {sink_path}, "GEN": "2"}}}})
v2 = lam.publish_version(FunctionName="weighted")["Version"]
alias = lam.create_alias(FunctionName="weighted", Name="live", FunctionVersion="1",
    RoutingConfig={{"AdditionalVersionWeights": {{v2: 1.0}}}})
out = {{"v2": v2, "routing": alias["RoutingConfig"]}}
r = lam.invoke(FunctionName="weighted", Qualifier="live", Payload=json.dumps({{"via": "sync"}}))
out["sync"] = r["ExecutedVersion"]
lam.invoke(FunctionName="weighted:live", InvocationType="Event", Payload=json.dumps({{"via": "event"}}))
events.put_rule(Name="to-alias", EventPattern=json.dumps({{"source": ["my.app"]}}))
events.put_targets(Rule="to-alias", Targets=[{{"Id": "a", "Arn": alias["AliasArn"]}}])
events.put_events(Entries=[{{"Source": "my.app", "DetailType": "d", "Detail": json.dumps({{"n": i}})}} for i in range(3)])
print(json.dumps(out))
"#,
        sink_src = serde_json::to_string(VERSION_SINK).unwrap(),
        sink_path = serde_json::to_string(sink.to_str().unwrap()).unwrap(),
    );
    let out = p.boto3(&script).await;
    assert_eq!(out["v2"], "2", "{out}");
    assert_eq!(
        out["routing"],
        json!({"AdditionalVersionWeights": {"2": 1.0}})
    );
    assert_eq!(out["sync"], "2", "a synchronous invoke follows the weights");
    // 1 sync + 1 Event invoke + 3 EventBridge deliveries.
    let lines = wait_lines(&sink, 5, |l| {
        l.iter()
            .filter(|e| e["event"]["source"] == "my.app")
            .count()
            == 3
    })
    .await;
    let by_source = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        lines
            .iter()
            .filter(|e| pred(e))
            .map(|e| e["version"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        by_source(&|e| e["event"]["via"] == "event"),
        ["2"],
        "an Event invoke follows the weights: {lines:?}"
    );
    assert_eq!(
        by_source(&|e| e["event"]["source"] == "my.app"),
        ["2", "2", "2"],
        "EventBridge deliveries to the alias follow its weights: {lines:?}"
    );
    for e in &lines {
        assert_eq!(
            e["arn"], "arn:aws:lambda:us-east-1:123456789012:function:weighted:live",
            "the invoked ARN is the alias's, whichever version ran"
        );
    }
    p.stop().await;
}
