//! The Lambda API through boto3: lifecycle, pagination, tags, versions, aliases, errors, SigV4,
//! persistence across restarts.

use serde_json::{Value, json};

use crate::harness::{PY_APP, TestPlatform};

fn py_literal(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_the_whole_lifecycle() {
    let p = TestPlatform::start().await;
    let script = format!(
        r#"
code = zip_files({{"app.py": {app}}})
out = {{}}
for i in range(120):
    lam.create_function(FunctionName=f"fn{{i:03d}}", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={{"ZipFile": code}}, Tags={{"team": "a" if i % 2 else "b"}})
pages = []
marker = None
while True:
    kw = {{"MaxItems": 50}}
    if marker: kw["Marker"] = marker
    r = lam.list_functions(**kw)
    pages.append(len(r["Functions"]))
    marker = r.get("NextMarker")
    if not marker: break
out["pages"] = pages
names = []
for page in lam.get_paginator("list_functions").paginate(PaginationConfig={{"PageSize": 50}}):
    names += [f["FunctionName"] for f in page["Functions"]]
out["paginated"] = len(names)
out["unique"] = len(set(names))
got = lam.get_function(FunctionName="fn000")
arn = got["Configuration"]["FunctionArn"]
import urllib.request
out["download_matches"] = urllib.request.urlopen(got["Code"]["Location"]).read() == code
out["arn"] = arn
lam.tag_resource(Resource=arn, Tags={{"serverless.consul.hashicorp.com/v1alpha1/lambda/enabled": "true"}})
out["tags"] = lam.list_tags(Resource=arn)["Tags"]
lam.untag_resource(Resource=arn, TagKeys=["team"])
out["tags_after"] = lam.list_tags(Resource=arn)["Tags"]
v1 = lam.publish_version(FunctionName="fn000")
out["v1"] = v1["Version"]
out["v1_again"] = lam.publish_version(FunctionName="fn000")["Version"]
lam.update_function_configuration(FunctionName="fn000", Environment={{"Variables": {{"GREETING": "hi"}}}}, Timeout=5)
out["v2"] = lam.publish_version(FunctionName="fn000")["Version"]
a = lam.create_alias(FunctionName="fn000", Name="live", FunctionVersion="1")
out["alias_arn"] = a["AliasArn"]
out["alias_conflict"] = err(lam.create_alias, FunctionName="fn000", Name="live", FunctionVersion="1")
out["get_cfg_alias"] = lam.get_function_configuration(FunctionName="fn000", Qualifier="live")["Version"]
lam.update_alias(FunctionName="fn000", Name="live", FunctionVersion="2")
out["aliases"] = [x["FunctionVersion"] for x in lam.list_aliases(FunctionName="fn000")["Aliases"]]
out["versions"] = [x["Version"] for x in lam.list_versions_by_function(FunctionName="fn000")["Versions"]]
r = lam.invoke(FunctionName="fn000", Qualifier="live", Payload=b'{{"k": "v"}}', LogType="Tail")
out["invoke"] = json.loads(r["Payload"].read())
out["executed"] = r["ExecutedVersion"]
out["log"] = base64.b64decode(r["LogResult"]).decode()
r = lam.invoke(FunctionName=arn + ":1", Payload=b'{{}}')
out["executed_arn_qualified"] = r["ExecutedVersion"]
out["event"] = lam.invoke(FunctionName="fn000", InvocationType="Event", Payload=b'{{}}')["StatusCode"]
out["dryrun"] = lam.invoke(FunctionName="fn000", InvocationType="DryRun")["StatusCode"]
out["delete_version_in_use"] = err(lam.delete_function, FunctionName="fn000", Qualifier="2")
lam.delete_alias(FunctionName="fn000", Name="live")
lam.delete_function(FunctionName="fn000")
out["after_delete"] = err(lam.get_function, FunctionName="fn000")
out["all_versions"] = len(lam.list_functions(FunctionVersion="ALL", MaxItems=50)["Functions"])
print(json.dumps(out))
"#,
        app = py_literal(PY_APP)
    );
    let out = p.boto3(&script).await;
    assert_eq!(out["pages"], json!([50, 50, 20]), "{out}");
    assert_eq!(out["download_matches"], true);
    assert_eq!(out["paginated"], 120);
    assert_eq!(out["unique"], 120);
    assert_eq!(
        out["arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:fn000"
    );
    assert_eq!(
        out["tags"]["serverless.consul.hashicorp.com/v1alpha1/lambda/enabled"],
        "true"
    );
    assert_eq!(out["tags_after"].as_object().unwrap().len(), 1);
    assert_eq!(out["v1"], "1");
    assert_eq!(
        out["v1_again"], "1",
        "unchanged $LATEST publishes no new version"
    );
    assert_eq!(out["v2"], "2");
    assert_eq!(
        out["alias_arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:fn000:live"
    );
    assert_eq!(out["alias_conflict"]["code"], "ResourceConflictException");
    assert_eq!(out["alias_conflict"]["status"], 409);
    assert_eq!(out["get_cfg_alias"], "1");
    assert_eq!(out["aliases"], json!(["2"]));
    assert_eq!(out["versions"], json!(["$LATEST", "1", "2"]));
    assert_eq!(out["invoke"]["echo"], json!({"k": "v"}));
    assert_eq!(out["invoke"]["version"], "2");
    assert_eq!(out["invoke"]["env"]["GREETING"], "hi");
    assert_eq!(
        out["invoke"]["arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:fn000:live"
    );
    assert_eq!(out["executed"], "2");
    assert!(
        out["log"].as_str().unwrap().contains("START RequestId:"),
        "{}",
        out["log"]
    );
    assert!(
        out["log"].as_str().unwrap().contains("got {\"k\": \"v\"}"),
        "{}",
        out["log"]
    );
    assert_eq!(out["executed_arn_qualified"], "1");
    assert_eq!(out["event"], 202);
    assert_eq!(out["dryrun"], 204);
    assert_eq!(
        out["delete_version_in_use"]["code"],
        "ResourceConflictException"
    );
    assert_eq!(out["after_delete"]["code"], "ResourceNotFoundException");
    assert_eq!(out["after_delete"]["status"], 404);
    assert_eq!(out["all_versions"], 50);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_aws_exceptions() {
    let p = TestPlatform::start().await;
    let script = format!(
        r#"
code = zip_files({{"app.py": {app}}})
lam.create_function(FunctionName="ok", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={{"ZipFile": code}})
out = {{}}
out["missing"] = err(lam.get_function, FunctionName="nope")
out["missing_arn"] = err(lam.invoke, FunctionName="arn:aws:lambda:us-east-1:123456789012:function:nope")
out["bad_name"] = err(lam.get_function, FunctionName="bad name!")
out["bad_qualifier"] = err(lam.invoke, FunctionName="ok", Qualifier="no such")
out["missing_qualifier"] = err(lam.invoke, FunctionName="ok", Qualifier="7")
out["qualifier_mismatch"] = err(lam.invoke, FunctionName="ok:1", Qualifier="2")
out["bad_json"] = err(lam.invoke, FunctionName="ok", Payload=b"{{not json")
out["too_big"] = err(lam.invoke, FunctionName="ok", Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
out["too_big_async"] = err(lam.invoke, FunctionName="ok", InvocationType="Event", Payload=b'"' + b"x" * (300 * 1024) + b'"')
arn = "arn:aws:lambda:us-east-1:123456789012:function:ok"
out["bad_tag"] = err(lam.tag_resource, Resource=arn, Tags={{"aws:reserved": "x"}})
out["bad_tag_arn"] = err(lam.list_tags, Resource="ok")
out["bad_role"] = err(lam.create_function, FunctionName="x", Runtime="python3.11", Role="nope", Handler="a.b", Code={{"ZipFile": code}})
out["bad_runtime"] = err(lam.create_function, FunctionName="x", Runtime="cobol85", Role=ROLE, Handler="a.b", Code={{"ZipFile": code}})
out["bad_zip"] = err(lam.create_function, FunctionName="x", Runtime="python3.11", Role=ROLE, Handler="a.b", Code={{"ZipFile": b"not a zip"}})
out["exists"] = err(lam.create_function, FunctionName="ok", Runtime="python3.11", Role=ROLE, Handler="a.b", Code={{"ZipFile": code}})
out["reserved_env"] = err(lam.update_function_configuration, FunctionName="ok", Environment={{"Variables": {{"AWS_REGION": "x"}}}})
out["bad_timeout"] = err(lam.update_function_configuration, FunctionName="ok", Timeout=901)
out["bad_marker"] = err(lam.list_functions, Marker="!!!")
out["bad_layer"] = err(lam.update_function_configuration, FunctionName="ok", Layers=["arn:aws:lambda:us-east-1:123456789012:layer:nope:1"])
out["delete_latest"] = err(lam.delete_function, FunctionName="ok", Qualifier="$LATEST")
print(json.dumps(out))
"#,
        app = py_literal(PY_APP)
    );
    let out = p.boto3(&script).await;
    let expect = |k: &str, code: &str, status: u64| {
        assert_eq!(out[k]["code"], code, "{k}: {}", out[k]);
        assert_eq!(out[k]["status"], status, "{k}: {}", out[k]);
    };
    expect("missing", "ResourceNotFoundException", 404);
    assert_eq!(
        out["missing"]["message"],
        "Function not found: arn:aws:lambda:us-east-1:123456789012:function:nope"
    );
    expect("missing_arn", "ResourceNotFoundException", 404);
    expect("bad_name", "ValidationException", 400);
    expect("bad_qualifier", "ValidationException", 400);
    expect("missing_qualifier", "ResourceNotFoundException", 404);
    expect("qualifier_mismatch", "InvalidParameterValueException", 400);
    expect("bad_json", "InvalidRequestContentException", 400);
    expect("too_big", "RequestTooLargeException", 413);
    expect("too_big_async", "RequestTooLargeException", 413);
    expect("bad_tag", "InvalidParameterValueException", 400);
    expect("bad_tag_arn", "ValidationException", 400);
    expect("bad_role", "ValidationException", 400);
    expect("bad_runtime", "InvalidParameterValueException", 400);
    expect("bad_zip", "InvalidParameterValueException", 400);
    expect("exists", "ResourceConflictException", 409);
    expect("reserved_env", "InvalidParameterValueException", 400);
    expect("bad_timeout", "ValidationException", 400);
    expect("bad_marker", "InvalidParameterValueException", 400);
    expect("bad_layer", "InvalidParameterValueException", 400);
    expect("delete_latest", "InvalidParameterValueException", 400);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_is_verified_on_every_call() {
    let p = TestPlatform::start().await;
    let script = r#"
out = {}
out["ok"] = len(lam.list_functions()["Functions"])
print(json.dumps(out))
"#;
    assert_eq!(p.boto3(script).await["ok"], 0);
    let script = r#"
out = {"lambda": err(lam.list_functions), "ssm": err(ssm.get_parameter, Name="/x"), "tagging": err(tagging.get_resources)}
print(json.dumps(out))
"#;
    let wrong_secret = p.boto3_env(script, &[("TEST_SK", "wrong")]).await;
    assert_eq!(wrong_secret["lambda"]["code"], "InvalidSignatureException");
    assert_eq!(wrong_secret["lambda"]["status"], 403);
    assert_eq!(wrong_secret["ssm"]["code"], "InvalidSignatureException");
    assert_eq!(wrong_secret["tagging"]["code"], "InvalidSignatureException");
    let wrong_key = p.boto3_env(script, &[("TEST_AK", "AKIDOTHER")]).await;
    assert_eq!(wrong_key["lambda"]["code"], "UnrecognizedClientException");
    assert_eq!(wrong_key["lambda"]["status"], 403);
    // No signature at all.
    let resp = reqwest_like_get(&p.endpoint, "/2015-03-31/functions/").await;
    assert_eq!(resp.0, 403);
    assert!(
        resp.1.contains("Missing Authentication Token"),
        "{}",
        resp.1
    );
    p.stop().await;
}

/// An unsigned GET with a raw TCP client (no AWS library involved).
async fn reqwest_like_get(endpoint: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = lambda_platform::PlatformConfig::new(tmp.path().join("data"));
    config.python = crate::harness::python();
    let p = TestPlatform::start_in(config.clone()).await;
    let script = format!(
        r#"
code = zip_files({{"app.py": {app}}})
lam.create_function(FunctionName="keep", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={{"ZipFile": code}}, Tags={{"a": "1"}})
lam.publish_version(FunctionName="keep")
lam.create_alias(FunctionName="keep", Name="live", FunctionVersion="1")
lam.put_function_concurrency(FunctionName="keep", ReservedConcurrentExecutions=3)
ssm.put_parameter(Name="/keep/secret", Value="kept-secret", Type="SecureString")
events.put_rule(Name="keep-rule", ScheduleExpression="rate(5 minutes)")
events.put_targets(Rule="keep-rule", Targets=[{{"Id": "1", "Arn": "arn:aws:lambda:us-east-1:123456789012:function:keep"}}])
print(json.dumps({{}}))
"#,
        app = py_literal(PY_APP)
    );
    p.boto3(&script).await;
    p.stop().await;
    let p = TestPlatform::start_in(config).await;
    let out = p
        .boto3(
            r#"
f = lam.get_function(FunctionName="keep")
r = lam.invoke(FunctionName="keep", Qualifier="live", Payload=b'{"x": 1}')
print(json.dumps({"tags": f["Tags"], "conc": f["Concurrency"], "alias": lam.get_alias(FunctionName="keep", Name="live")["FunctionVersion"],
  "versions": [v["Version"] for v in lam.list_versions_by_function(FunctionName="keep")["Versions"]],
  "invoke": json.loads(r["Payload"].read())["echo"],
  "secret": ssm.get_parameter(Name="/keep/secret", WithDecryption=True)["Parameter"]["Value"],
  "rule": events.describe_rule(Name="keep-rule")["ScheduleExpression"],
  "targets": [t["Arn"] for t in events.list_targets_by_rule(Rule="keep-rule")["Targets"]]}))
"#,
        )
        .await;
    assert_eq!(out["tags"], json!({"a": "1"}));
    assert_eq!(out["conc"]["ReservedConcurrentExecutions"], 3);
    assert_eq!(out["alias"], "1");
    assert_eq!(out["versions"], json!(["$LATEST", "1"]));
    assert_eq!(out["invoke"], json!({"x": 1}));
    assert_eq!(out["secret"], "kept-secret");
    assert_eq!(out["rule"], "rate(5 minutes)");
    assert_eq!(
        out["targets"],
        json!(["arn:aws:lambda:us-east-1:123456789012:function:keep"])
    );
    p.stop().await;
    let _: Value = Value::Null;
}

/// Runs the AWS CLI (from the venv) against the platform and parses its JSON output.
async fn aws(p: &TestPlatform, args: &[&str]) -> Value {
    let aws = crate::harness::python().parent().unwrap().join("aws");
    assert!(
        aws.exists(),
        "AWS CLI missing at {} — run scripts/setup.sh",
        aws.display()
    );
    let out = tokio::process::Command::new(aws)
        .arg("--endpoint-url")
        .arg(&p.endpoint)
        .args(["--output", "json"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_drives_the_lifecycle() {
    let p = TestPlatform::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let zip = tmp.path().join("fn.zip");
    p.boto3(&format!(
        r#"
code = zip_files({{"app.py": {app}}})
open({zip}, "wb").write(code)
for i in range(119):
    lam.create_function(FunctionName=f"bulk{{i:03d}}", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={{"ZipFile": code}})
print("{{}}")
"#,
        app = py_literal(PY_APP),
        zip = py_literal(zip.to_str().unwrap())
    ))
    .await;
    let zip_arg = format!("fileb://{}", zip.display());
    let created = aws(
        &p,
        &[
            "lambda",
            "create-function",
            "--function-name",
            "cli",
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--role",
            "arn:aws:iam::123456789012:role/lambda",
            "--zip-file",
            &zip_arg,
        ],
    )
    .await;
    let arn = created["FunctionArn"].as_str().unwrap().to_owned();
    assert_eq!(arn, "arn:aws:lambda:us-east-1:123456789012:function:cli");
    let all = aws(&p, &["lambda", "list-functions", "--page-size", "50"]).await;
    assert_eq!(all["Functions"].as_array().unwrap().len(), 120);
    let first = aws(&p, &["lambda", "list-functions", "--max-items", "50"]).await;
    assert_eq!(first["Functions"].as_array().unwrap().len(), 50);
    let token = first["NextToken"].as_str().unwrap().to_owned();
    let second = aws(
        &p,
        &[
            "lambda",
            "list-functions",
            "--max-items",
            "50",
            "--starting-token",
            &token,
        ],
    )
    .await;
    assert_eq!(second["Functions"].as_array().unwrap().len(), 50);
    aws(
        &p,
        &[
            "lambda",
            "tag-resource",
            "--resource",
            &arn,
            "--tags",
            "team=mesh",
        ],
    )
    .await;
    assert_eq!(
        aws(&p, &["lambda", "list-tags", "--resource", &arn]).await["Tags"]["team"],
        "mesh"
    );
    assert_eq!(
        aws(&p, &["lambda", "publish-version", "--function-name", "cli"]).await["Version"],
        "1"
    );
    let alias = aws(
        &p,
        &[
            "lambda",
            "create-alias",
            "--function-name",
            "cli",
            "--name",
            "live",
            "--function-version",
            "1",
        ],
    )
    .await;
    assert_eq!(alias["AliasArn"], format!("{arn}:live"));
    let outfile = tmp.path().join("out.json");
    let payload_file = tmp.path().join("in.json");
    std::fs::write(&payload_file, r#"{"via": "cli"}"#).unwrap();
    let inv = aws(
        &p,
        &[
            "lambda",
            "invoke",
            "--function-name",
            "cli",
            "--qualifier",
            "live",
            "--payload",
            &format!("fileb://{}", payload_file.display()),
            outfile.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(inv["StatusCode"], 200);
    assert_eq!(inv["ExecutedVersion"], "1");
    let result: Value = serde_json::from_slice(&std::fs::read(&outfile).unwrap()).unwrap();
    assert_eq!(result["echo"], json!({"via": "cli"}));
    aws(
        &p,
        &[
            "lambda",
            "delete-alias",
            "--function-name",
            "cli",
            "--name",
            "live",
        ],
    )
    .await;
    aws(&p, &["lambda", "delete-function", "--function-name", "cli"]).await;
    let listed = aws(&p, &["lambda", "list-functions"]).await;
    assert_eq!(listed["Functions"].as_array().unwrap().len(), 119);
    p.stop().await;
}
