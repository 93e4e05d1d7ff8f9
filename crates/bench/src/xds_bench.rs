//! xDS benchmark: (1) a config change → applied by a real Envoy (seen on its admin API), p50/p99
//! over 100 changes; (2) 1,000 simulated delta-ADS clients, one change that touches all: time
//! until every client has received it and ACKed, and the server's RSS.

#![allow(clippy::print_stdout)] // a benchmark's job is to print its figures

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{Child, free_port, http_agent, percentile, rss_kib, start_server, wait_for};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// For config PUTs and Envoy admin polls, all on loopback.
fn agent() -> ureq::Agent {
    http_agent(Duration::from_secs(30))
}

fn put(http: &str, path: &str, body: &serde_json::Value) -> anyhow::Result<()> {
    bench::put(&agent(), http, path, body)
}

fn envoy_change_latency(bin: &str, envoy: &str) -> anyhow::Result<(f64, f64)> {
    let server = start_server(bin, &["agent", "-dev"])?;
    let (http, grpc) = (&server.http, &server.grpc);
    put(
        http,
        "/v1/agent/service/register",
        &serde_json::json!({"Name": "a", "Port": 1, "Connect": {"SidecarService": {"Port": free_port()?, "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": free_port()?}]}}}}),
    )?;
    let admin = free_port()?;
    let _envoy = Child::spawn(
        Command::new(bin)
            .args([
                "connect",
                "envoy",
                "-sidecar-for",
                "a",
                "-http-addr",
                http,
                "-grpc-addr",
                grpc,
                "-admin-bind",
                &format!("127.0.0.1:{admin}"),
                "--",
                "-l",
                "error",
            ])
            .env("ENVOY_BIN", envoy)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    wait_for("Envoy to get its clusters", 30, || {
        bench::envoy_stat(admin, "cluster_manager.cds.update_success") > 0
    })?;
    let mut lat = Vec::new();
    for i in 0..100 {
        let before = bench::envoy_stat(admin, "cluster_manager.cds.update_success");
        let t = Instant::now();
        put(
            http,
            "/v1/config",
            &serde_json::json!({"Kind": "service-resolver", "Name": "db", "ConnectTimeout": format!("{}ms", 1000 + i)}),
        )?;
        while bench::envoy_stat(admin, "cluster_manager.cds.update_success") <= before {
            if t.elapsed() > Duration::from_secs(10) {
                bail!("change {i} never reached Envoy");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let p = |q| percentile(&lat, q).unwrap_or(f64::NAN);
    Ok((p(0.5), p(0.99)))
}

async fn fleet(bin: &str, n: usize) -> anyhow::Result<(f64, f64)> {
    let server = start_server(bin, &["agent", "-dev"])?;
    let (http, grpc) = (&server.http, &server.grpc);
    for i in 0..n {
        put(
            http,
            "/v1/agent/service/register",
            &serde_json::json!({"Name": format!("svc-{i}"), "Port": 1, "Connect": {"SidecarService": {"Port": 30000 + i, "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 9000}]}}}}),
        )?;
    }
    let acked = Arc::new(AtomicUsize::new(0));
    let updated = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(AtomicUsize::new(0));
    let mut channels = Vec::new();
    for _ in 0..n.div_ceil(100) {
        channels.push(
            tonic::transport::Channel::from_shared(format!("http://{grpc}"))?
                .connect()
                .await?,
        );
    }
    for i in 0..n {
        let mut client = AggregatedDiscoveryServiceClient::new(channels[i / 100].clone());
        let (acked, updated, ready) = (acked.clone(), updated.clone(), ready.clone());
        tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(4);
            let node = Some(Node {
                id: format!("svc-{i}-sidecar-proxy"),
                ..Default::default()
            });
            let _ = tx
                .send(DeltaDiscoveryRequest {
                    node: node.clone(),
                    type_url: CDS.into(),
                    ..Default::default()
                })
                .await;
            let Ok(resp) = client
                .delta_aggregated_resources(ReceiverStream::new(rx))
                .await
            else {
                return;
            };
            let mut stream = resp.into_inner();
            let mut first = true;
            while let Ok(Some(msg)) = stream.message().await {
                let _ = tx
                    .send(DeltaDiscoveryRequest {
                        node: node.clone(),
                        type_url: CDS.into(),
                        response_nonce: msg.nonce.clone(),
                        ..Default::default()
                    })
                    .await;
                if first {
                    first = false;
                    ready.fetch_add(1, Ordering::Relaxed);
                } else {
                    updated.fetch_add(1, Ordering::Relaxed);
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let t = Instant::now();
    while ready.load(Ordering::Relaxed) < n {
        if t.elapsed() > Duration::from_secs(120) {
            bail!(
                "only {} of {n} clients got their first snapshot",
                ready.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = updated.load(Ordering::Relaxed);
    let t = Instant::now();
    let http2 = http.clone();
    tokio::task::spawn_blocking(move || {
        put(
            &http2,
            "/v1/config",
            &serde_json::json!({"Kind": "service-resolver", "Name": "db", "ConnectTimeout": "3s"}),
        )
    })
    .await??;
    while acked.load(Ordering::Relaxed) < base + n {
        if t.elapsed() > Duration::from_secs(60) {
            bail!(
                "only {} of {n} clients ACKed the change",
                acked.load(Ordering::Relaxed) - base
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let all_acked = t.elapsed().as_secs_f64();
    let rss = rss_kib(server.child.id())? as f64;
    Ok((all_acked, rss / 1024.0))
}

fn main() -> anyhow::Result<()> {
    bench::clean_up_on_signal()?;
    let bin = std::env::args()
        .nth(1)
        .context("usage: xds-bench <lambdamesh binary> <envoy binary>")?;
    let envoy = std::env::args()
        .nth(2)
        .context("usage: xds-bench <lambdamesh binary> <envoy binary>")?;
    let (p50, p99) = envoy_change_latency(&bin, &envoy)?;
    println!(
        "config change -> applied by a real Envoy (cds.update_success on its admin API), 100 changes: p50 {p50:.1} ms, p99 {p99:.1} ms"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (secs, rss) = rt.block_on(fleet(&bin, 1000))?;
    println!(
        "1,000 simulated delta-ADS clients, one change touching all: all ACKed in {:.0} ms; server RSS {rss:.1} MB",
        secs * 1e3
    );
    Ok(())
}
