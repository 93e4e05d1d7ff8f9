//! Registrator benchmark: starts a real `lambdamesh agent -dev` and `lambdamesh lambda serve`,
//! creates N functions (30 % enabled, a tenth of those with two aliases), then measures from
//! outside (1) `lambdamesh registrator sync` wall time, AWS calls and writes, (2) a no-op
//! resync, (3) the same no-op resync listing with ListFunctions + ListTags — the reference's
//! call pattern, N + N/PAGE_SIZE — in the same run, (4) event → registered latency with the
//! registrator deployed as a Lambda function behind the platform's CloudTrail event rule.

#![allow(clippy::print_stdout)] // a benchmark's job is to print its figures

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{Child, free_port, http_agent, percentile, start_server, wait_for};
use lambda_platform::{Credentials, client::Client};
use serde_json::{Value, json};

const PREFIX: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda";

fn zip_b64() -> anyhow::Result<String> {
    use base64::Engine as _;
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    z.start_file(
        "app.py",
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored),
    )?;
    std::io::Write::write_all(&mut z, b"def handler(e, c):\n    return e\n")?;
    z.finish()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf.into_inner()))
}

fn create_body(name: &str, tags: Value, zip: &str, runtime: &str, env: Value) -> Value {
    json!({"FunctionName": name, "Runtime": runtime, "Handler": "app.handler",
           "Role": "arn:aws:iam::123456789012:role/lambda", "Code": {"ZipFile": zip}, "Tags": tags,
           "Timeout": 60, "Environment": {"Variables": env}})
}

/// The `key=value` fields of the registrator's "full sync done" log line.
fn summary(stderr: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("full sync done"))
        .with_context(|| format!("no summary line in:\n{stderr}"))?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn sync(
    bin: &str,
    http: &str,
    endpoint: &str,
    extra: &[&str],
) -> anyhow::Result<(Duration, std::collections::BTreeMap<String, String>)> {
    let t = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.args(["registrator", "sync"])
        .env("LAMBDAMESH_LOG", "info")
        .env("CONSUL_HTTP_ADDR", http)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    if !extra.contains(&"-no-tls") {
        cmd.env("CONSUL_EXTENSION_DATA_PREFIX", "/mesh");
    } else {
        cmd.env_remove("CONSUL_EXTENSION_DATA_PREFIX");
    }
    let extra: Vec<&str> = extra.iter().copied().filter(|a| *a != "-no-tls").collect();
    cmd.args(&extra);
    let out = cmd.output()?;
    let wall = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("registrator sync failed:\n{err}");
    }
    Ok((wall, summary(&err)?))
}

fn registered(agent: &ureq::Agent, http: &str, name: &str) -> bool {
    agent
        .get(&format!("http://{http}/v1/catalog/service/{name}"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .is_some_and(|b| b.trim() != "[]" && !b.trim().is_empty())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    bench::clean_up_on_signal()?;
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .context("usage: registrator-bench LAMBDAMESH [N] [EVENTS]")?;
    let n: usize = args.get(2).map_or(Ok(10_000), |s| s.parse())?;
    let events: usize = args.get(3).map_or(Ok(50), |s| s.parse())?;
    let server = start_server(bin, &["agent", "-dev"])?;
    let http = &server.http;
    let data = bench::scratch_dir("lambdamesh-registrator-bench-")?;
    let port = free_port()?;
    let _platform = Child::spawn(
        Command::new(bin)
            .args(["lambda", "serve", "-addr", &format!("127.0.0.1:{port}")])
            .args(["-data-dir", data.path().to_str().context("path")?])
            .env("LAMBDAMESH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let endpoint = format!("http://127.0.0.1:{port}");
    // Nothing else runs on this runtime yet, so blocking its thread while polling costs nothing.
    wait_for("the platform", 10, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    let client = Client::new(
        &endpoint,
        Credentials {
            access_key: "test".into(),
            secret_key: "test".into(),
        },
        "us-east-1",
    )?;
    let zip = zip_b64()?;

    // Setup: N functions, 16 concurrent creates.
    let t = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    let (mut enabled, mut aliased) = (0, 0);
    for i in 0..n {
        let mut tags = serde_json::Map::new();
        tags.insert("team".into(), json!(format!("t{}", i % 7)));
        if i % 10 < 3 {
            enabled += 1;
            tags.insert(format!("{PREFIX}/enabled"), json!("true"));
            if i % 100 < 3 {
                aliased += 1;
                tags.insert(format!("{PREFIX}/aliases"), json!("blue+green"));
            }
        }
        let body = create_body(
            &format!("fn{i:05}"),
            Value::Object(tags),
            &zip,
            "python3.11",
            json!({}),
        );
        let (c, sem) = (client.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            c.lambda("POST", "/2015-03-31/functions", Some(&body)).await
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    println!(
        "setup: {n} functions ({enabled} enabled, {aliased} with 2 aliases → {} services) created in {:.1} s",
        enabled + 2 * aliased,
        t.elapsed().as_secs_f64()
    );

    // The two phases of the first sync print the same figures.
    let first_sync = |what: &str, flags: &[&str]| -> anyhow::Result<()> {
        let (wall, s) = sync(bin, http, &endpoint, flags)?;
        println!(
            "{what}: wall {:.2} s (engine {} ms), AWS calls {}, Consul calls {}, writes {}, upserts {}, errors {}",
            wall.as_secs_f64(),
            s["duration_ms"],
            s["aws_calls"],
            s["consul_calls"],
            s["writes"],
            s["upserts"],
            s["errors"]
        );
        Ok(())
    };
    first_sync(
        "full sync without mTLS material (tagging API)",
        &["-no-tls"],
    )?;
    first_sync(
        "then full sync adding the mTLS material (leaf + SecureString per service)",
        &[],
    )?;
    let (wall, s) = sync(bin, http, &endpoint, &[])?;
    println!(
        "no-op resync (tagging API): wall {:.2} s, AWS calls {}, Consul calls {}, writes {}",
        wall.as_secs_f64(),
        s["aws_calls"],
        s["consul_calls"],
        s["writes"]
    );
    let (wall, s) = sync(bin, http, &endpoint, &["-list-mode", "functions"])?;
    println!(
        "no-op resync (ListFunctions + ListTags, the reference's pattern): wall {:.2} s, AWS calls {}, writes {}; reference formula N + N/PAGE_SIZE = {}",
        wall.as_secs_f64(),
        s["aws_calls"],
        s["writes"],
        n + n.div_ceil(50)
    );

    // Event → registered: the registrator as a Lambda function behind the CloudTrail rule.
    let pkg = bench::scratch_dir("lambdamesh-registrator-bench-pkg-")?;
    let bootstrap = pkg.path().join("bootstrap");
    std::fs::write(
        &bootstrap,
        format!("#!/bin/sh\nexec {bin} registrator lambda\n"),
    )?;
    let status = Command::new("chmod").arg("755").arg(&bootstrap).status()?;
    if !status.success() {
        bail!("chmod failed");
    }
    let out = Command::new(bin)
        .args(["lambda", "create", "registrator", "--dir"])
        .arg(pkg.path())
        .args([
            "--runtime",
            "provided.al2023",
            "--handler",
            "bootstrap",
            "--timeout",
            "60",
        ])
        .args([
            "--env",
            &format!("CONSUL_HTTP_ADDR={http}"),
            "--env",
            "CONSUL_EXTENSION_DATA_PREFIX=/mesh",
            "--env",
            "LOG_LEVEL=warn",
        ])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()?;
    if !out.status.success() {
        bail!(
            "create registrator: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pattern = json!({"source": ["aws.lambda"], "detail-type": ["AWS API Call via CloudTrail"],
                         "detail": {"eventName": ["CreateFunction20150331"]}});
    client
        .target(
            "events",
            "AWSEvents.PutRule",
            &json!({"Name": "reg", "EventPattern": pattern.to_string()}),
        )
        .await?;
    client
        .target("events", "AWSEvents.PutTargets", &json!({"Rule": "reg", "Targets": [{"Id": "r", "Arn": "arn:aws:lambda:us-east-1:123456789012:function:registrator"}]}))
        .await?;
    // Warm the sandbox once (cold start is the platform's figure, not the registrator's).
    client
        .invoke(
            "registrator",
            bytes::Bytes::from_static(
                br#"{"source":"aws.lambda","detail":{"eventName":"PublishVersion20150331"}}"#,
            ),
            &[],
        )
        .await?;
    // A request hanging longer than the 30 s the loop below waits could only hang the bench.
    let agent = http_agent(Duration::from_secs(30));
    let mut lat = Vec::new();
    for k in 0..events {
        let name = format!("lat{k:03}");
        let body = create_body(
            &name,
            json!({format!("{PREFIX}/enabled"): "true"}),
            &zip,
            "python3.11",
            json!({}),
        );
        client
            .lambda("POST", "/2015-03-31/functions", Some(&body))
            .await?;
        let t = Instant::now();
        loop {
            let (a, h, nm) = (agent.clone(), http.clone(), name.clone());
            if tokio::task::spawn_blocking(move || registered(&a, &h, &nm)).await? {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("{name} not registered within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    let ms = |q| percentile(&lat, q).unwrap_or_default().as_secs_f64() * 1000.0;
    println!(
        "event → registered ({events} CreateFunction events, {} services in the catalog): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        enabled + 2 * aliased,
        ms(0.5),
        ms(0.9),
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    Ok(())
}
