//! Benchmark of the local Lambda platform (run by `bench/lambda-platform.sh`):
//! warm invoke latency and throughput of a `lambda_runtime` Rust function with 4 sandboxes, next
//! to a plain loopback HTTP echo server measured in the same run with the same client stack;
//! cold-start time for the Python (awslambdaric) and Rust runtimes; ListFunctions over N functions.
//!
//! Usage: bench <echo_rust binary> <python with awslambdaric> [functions=10000] [invokes=20000]

use std::{
    convert::Infallible,
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{client::legacy::Client as HyperClient, rt::TokioExecutor, rt::TokioIo};
use lambda_platform::{Credentials, PlatformConfig, client::Client};
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CONCURRENCY: usize = 4;

fn zip(files: &[(&str, &[u8])]) -> Result<String, BoxError> {
    let dir = tempfile::tempdir()?;
    for (name, data) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, data)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(base64::engine::general_purpose::STANDARD
        .encode(lambda_platform::code::zip_dir(dir.path())?))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(
    out: &mut impl Write,
    name: &str,
    mut lat: Vec<Duration>,
    wall: Duration,
) -> Result<Duration, BoxError> {
    lat.sort();
    let p50 = percentile(&lat, 0.50);
    writeln!(
        out,
        "{name:<28} n={:<6} p50={:>8.3} ms  p99={:>8.3} ms  throughput={:>8.0} req/s",
        lat.len(),
        p50.as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.len() as f64 / wall.as_secs_f64()
    )?;
    Ok(p50)
}

async fn echo_server() -> Result<u16, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(port)
}

async fn run_load<F, Fut>(n: usize, f: F) -> Result<(Vec<Duration>, Duration), BoxError>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send,
{
    let f = Arc::new(f);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n / CONCURRENCY);
            for _ in 0..n / CONCURRENCY {
                let t = Instant::now();
                f().await?;
                lat.push(t.elapsed());
            }
            Ok::<_, BoxError>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, start.elapsed()))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let echo_bin = args
        .get(1)
        .ok_or("usage: bench <echo_rust> <python> [functions] [invokes]")?
        .clone();
    let python = args.get(2).ok_or("missing python")?.clone();
    let functions: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let invokes: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let tmp = tempfile::tempdir()?;
    let mut config = PlatformConfig::new(tmp.path().join("data"));
    config.python = python.into();
    // `LAMBDA_BENCH_FREEZE=0`: sandboxes not frozen between invokes (to measure what freezing costs).
    config.freeze = std::env::var("LAMBDA_BENCH_FREEZE").map_or(true, |v| v != "0");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lambda_platform::serve(listener, config, async move {
        let _ = stop_rx.await;
    }));
    let client = Client::new(
        &endpoint,
        Credentials {
            access_key: "test".into(),
            secret_key: "test".into(),
        },
        "us-east-1",
    )?;
    let mut out = std::io::stdout();
    let role = "arn:aws:iam::123456789012:role/bench";
    let bootstrap = format!("#!/bin/sh\nexec {echo_bin}\n");
    let rust_zip = zip(&[("bootstrap", bootstrap.as_bytes())])?;
    let py_zip = zip(&[(
        "app.py",
        b"def handler(event, context):\n    return event\n",
    )])?;
    let create = |name: &str, runtime: &str, handler: &str, code: &str| json!({"FunctionName": name, "Runtime": runtime, "Role": role, "Handler": handler, "Code": {"ZipFile": code}});
    client
        .lambda(
            "POST",
            "/2015-03-31/functions",
            Some(&create("echo", "provided.al2023", "bootstrap", &rust_zip)),
        )
        .await?;

    // 1. Warm invokes with 4 sandboxes vs a plain loopback echo server, same client stack.
    let payload = Bytes::from_static(br#"{"hello":"world","n":12345}"#);
    let warm = (0..CONCURRENCY).map(|_| {
        let (c, p) = (client.clone(), payload.clone());
        async move { c.invoke("echo", p, &[]).await }
    });
    for r in futures_join(warm).await {
        r?;
    }
    let port = echo_server().await?;
    let http: HyperClient<_, Full<Bytes>> = HyperClient::builder(TokioExecutor::new()).build_http();
    let base_payload = payload.clone();
    let _ = run_load(400, {
        let http = http.clone();
        let p = base_payload.clone();
        move || {
            let http = http.clone();
            let p = p.clone();
            async move {
                let req = Request::post(format!("http://127.0.0.1:{port}/")).body(Full::new(p))?;
                http.request(req).await?.into_body().collect().await?;
                Ok(())
            }
        }
    })
    .await?;
    let (lat, wall) = run_load(invokes, {
        let http = http.clone();
        move || {
            let http = http.clone();
            let p = base_payload.clone();
            async move {
                let req = Request::post(format!("http://127.0.0.1:{port}/")).body(Full::new(p))?;
                http.request(req).await?.into_body().collect().await?;
                Ok(())
            }
        }
    })
    .await?;
    writeln!(
        out,
        "# warm path, {CONCURRENCY} concurrent clients, {} requests each run",
        invokes
    )?;
    let base_p50 = report(&mut out, "loopback HTTP echo", lat, wall)?;
    let (lat, wall) = run_load(invokes, {
        let client = client.clone();
        move || {
            let client = client.clone();
            let p = payload.clone();
            async move {
                let r = client.invoke("echo", p, &[]).await?;
                if r.status != 200 || r.header("x-amz-function-error").is_some() {
                    return Err(format!("invoke failed: {} {:?}", r.status, r.body).into());
                }
                Ok(())
            }
        }
    })
    .await?;
    let inv_p50 = report(&mut out, "Invoke (Rust echo, SigV4)", lat, wall)?;
    writeln!(
        out,
        "added p50 vs loopback echo: {:.3} ms",
        (inv_p50.saturating_sub(base_p50)).as_secs_f64() * 1e3
    )?;

    // 2. Cold starts: a fresh function per run, first invoke measured end to end.
    writeln!(
        out,
        "# cold start (first invoke of a new function, includes process start and INIT)"
    )?;
    for (runtime, handler, code, label) in [
        (
            "provided.al2023",
            "bootstrap",
            &rust_zip,
            "Rust lambda_runtime",
        ),
        ("python3.11", "app.handler", &py_zip, "Python awslambdaric"),
    ] {
        let mut lat = Vec::new();
        for i in 0..5 {
            let name = format!("cold-{}-{i}", runtime.replace('.', "-"));
            client
                .lambda(
                    "POST",
                    "/2015-03-31/functions",
                    Some(&create(&name, runtime, handler, code)),
                )
                .await?;
            let t = Instant::now();
            let r = client.invoke(&name, Bytes::from_static(b"{}"), &[]).await?;
            if r.status != 200 || r.header("x-amz-function-error").is_some() {
                return Err(format!("cold invoke failed: {:?}", r.body).into());
            }
            lat.push(t.elapsed());
        }
        lat.sort();
        writeln!(
            out,
            "{label:<28} runs=5 median={:.1} ms  min={:.1} ms  max={:.1} ms",
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            lat[0].as_secs_f64() * 1e3,
            lat[lat.len() - 1].as_secs_f64() * 1e3
        )?;
    }

    // 3. ListFunctions over many functions.
    let t = Instant::now();
    let mut created = 0;
    let names: Vec<String> = (0..functions).map(|i| format!("f{i:05}")).collect();
    for chunk in names.chunks(16) {
        let calls = chunk.iter().map(|n| {
            let (c, body) = (
                client.clone(),
                create(n, "python3.11", "app.handler", &py_zip),
            );
            async move { c.lambda("POST", "/2015-03-31/functions", Some(&body)).await }
        });
        for r in futures_join(calls).await {
            r?;
            created += 1;
        }
    }
    let create_wall = t.elapsed();
    let mut pages = Vec::new();
    let mut seen = 0;
    let mut marker: Option<String> = None;
    let t = Instant::now();
    loop {
        let path = match &marker {
            Some(m) => format!(
                "/2015-03-31/functions/?MaxItems=50&Marker={}",
                lambda_platform::sigv4::uri_encode(m, true)
            ),
            None => "/2015-03-31/functions/?MaxItems=50".into(),
        };
        let pt = Instant::now();
        let page: Value = client.lambda("GET", &path, None).await?;
        pages.push(pt.elapsed());
        seen += page["Functions"].as_array().map_or(0, Vec::len);
        marker = page
            .get("NextMarker")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    let list_wall = t.elapsed();
    pages.sort();
    writeln!(
        out,
        "# ListFunctions over {} functions (created {created} in {:.1} s, durable writes)",
        seen,
        create_wall.as_secs_f64()
    )?;
    writeln!(
        out,
        "full listing: {} pages of 50 in {:.1} ms; per page p50={:.2} ms p99={:.2} ms",
        pages.len(),
        list_wall.as_secs_f64() * 1e3,
        percentile(&pages, 0.5).as_secs_f64() * 1e3,
        percentile(&pages, 0.99).as_secs_f64() * 1e3
    )?;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
    Ok(())
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = Vec::new();
    for f in futs {
        set.push(tokio::spawn(f));
    }
    let mut out = Vec::new();
    for h in set {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}
