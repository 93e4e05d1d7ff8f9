//! The ADS server through a real gRPC client (tonic + envoy-types): unknown proxies, missing
//! node IDs, unknown types and bad tokens get gRPC errors; state of the world and delta serve
//! the proxy's resources with versions and nonces; a NACK is recorded and shown over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::time::Duration;

use common::TestServer;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.into(),
        cluster: "x".into(),
        ..Default::default()
    })
}

async fn sotw(
    grpc: &str,
    token: Option<&str>,
) -> (
    mpsc::Sender<DiscoveryRequest>,
    tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
) {
    let mut client = AggregatedDiscoveryServiceClient::connect(grpc.to_owned())
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(t) = token {
        req.metadata_mut()
            .insert("x-consul-token", t.parse().unwrap());
    }
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        client.stream_aggregated_resources(req),
    )
    .await
    .expect("no response headers")
    .unwrap()
    .into_inner();
    (tx, stream)
}

fn register_web(s: &TestServer) {
    let r = s.put("/v1/agent/service/register", &json!({"Name": "web", "Port": 8080, "Connect": {"SidecarService": {"Port": 21500, "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191}]}}}}).to_string());
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_grpc_statuses() {
    let s = tokio::task::spawn_blocking(TestServer::start)
        .await
        .unwrap();
    // Unknown proxy.
    let (tx, mut stream) = sotw(&s.grpc, None).await;
    tx.send(DiscoveryRequest {
        node: node("nope"),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    assert!(err.message().contains("nope"));
    // No node ID.
    let (tx, mut stream) = sotw(&s.grpc, None).await;
    tx.send(DiscoveryRequest {
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        stream.message().await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    // An unsupported type.
    tokio::task::spawn_blocking({
        let base = s.base.clone();
        move || {
            let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
            let r = agent.put(&format!("{base}/v1/agent/service/register")).send(json!({"Name": "web", "Port": 8080, "Connect": {"SidecarService": {"Port": 21500}}}).to_string()).unwrap();
            assert_eq!(r.status(), 200);
        }
    })
    .await
    .unwrap();
    let (tx, mut stream) = sotw(&s.grpc, None).await;
    tx.send(DiscoveryRequest {
        node: node("web-sidecar-proxy"),
        type_url: "type.googleapis.com/bogus".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        stream.message().await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_versions_nonces_and_nacks() {
    let s = tokio::task::spawn_blocking(TestServer::start)
        .await
        .unwrap();
    let s = tokio::task::spawn_blocking(move || {
        register_web(&s);
        s
    })
    .await
    .unwrap();
    let (tx, mut stream) = sotw(&s.grpc, None).await;
    tx.send(DiscoveryRequest {
        node: node("web-sidecar-proxy"),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let r1 = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r1.type_url, CDS);
    assert!(!r1.nonce.is_empty());
    let names: Vec<String> = r1
        .resources
        .iter()
        .map(|a| {
            <envoy_types::pb::envoy::config::cluster::v3::Cluster as prost::Message>::decode(
                a.value.as_slice(),
            )
            .unwrap()
            .name
        })
        .collect();
    assert!(names.contains(&"local_app".to_owned()), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("db.default.dc1.internal.")),
        "{names:?}"
    );
    // NACK it: recorded with Envoy's message, and nothing is re-sent for the same content.
    tx.send(DiscoveryRequest {
        node: node("web-sidecar-proxy"),
        type_url: CDS.into(),
        version_info: String::new(),
        response_nonce: r1.nonce.clone(),
        error_detail: Some(RpcStatus {
            code: 3,
            message: "bad cluster: test rejection".into(),
            details: vec![],
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stream.message())
            .await
            .is_err(),
        "a NACK must not trigger a resend"
    );
    let status = tokio::task::spawn_blocking({
        let base = s.base.clone();
        move || {
            let mut r = ureq::get(&format!("{base}/v1/internal/xds/status"))
                .call()
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&r.body_mut().read_to_string().unwrap())
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        status["Nacks"]["web-sidecar-proxy"][0]["Message"],
        "bad cluster: test rejection"
    );
    // A change produces a new version with a new nonce.
    let s = tokio::task::spawn_blocking(move || {
        let r = s.put(
            "/v1/config",
            r#"{"Kind":"service-resolver","Name":"db","ConnectTimeout":"2s"}"#,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        s
    })
    .await
    .unwrap();
    let r2 = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_ne!(r2.nonce, r1.nonce);
    assert_ne!(r2.version_info, r1.version_info);
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_and_acl_tokens() {
    let s = tokio::task::spawn_blocking(|| {
        TestServer::start_with(|c| {
            c.acl.enabled = true;
            c.acl.default_allow = false;
            c.acl.initial_management = Some("11111111-2222-3333-4444-555555555555".into());
        })
    })
    .await
    .unwrap();
    let s = tokio::task::spawn_blocking(move || {
        let r = s.req("PUT", "/v1/agent/service/register", Some(&json!({"Name": "web", "Port": 8080, "Connect": {"SidecarService": {"Port": 21500}}}).to_string()), Some("11111111-2222-3333-4444-555555555555"));
        assert_eq!(r.status, 200, "{}", r.body);
        s
    })
    .await
    .unwrap();
    let delta = |token: Option<&'static str>| {
        let grpc = s.grpc.clone();
        async move {
            let mut client = AggregatedDiscoveryServiceClient::connect(grpc)
                .await
                .unwrap();
            let (tx, rx) = mpsc::channel(8);
            let mut req = tonic::Request::new(ReceiverStream::new(rx));
            if let Some(t) = token {
                req.metadata_mut()
                    .insert("x-consul-token", t.parse().unwrap());
            }
            let stream = client
                .delta_aggregated_resources(req)
                .await
                .unwrap()
                .into_inner();
            tx.send(DeltaDiscoveryRequest {
                node: node("web-sidecar-proxy"),
                type_url: LDS.into(),
                ..Default::default()
            })
            .await
            .unwrap();
            (tx, stream)
        }
    };
    let (_tx, mut stream) = delta(None).await;
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let (_tx, mut stream) = delta(Some("00000000-0000-0000-0000-00000000dead")).await;
    assert_eq!(
        stream.message().await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    let (_tx, mut stream) = delta(Some("11111111-2222-3333-4444-555555555555")).await;
    let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.type_url, LDS);
    assert!(
        r.resources
            .iter()
            .any(|res| res.name.starts_with("public_listener:")),
        "{:?}",
        r.resources.iter().map(|r| &r.name).collect::<Vec<_>>()
    );
    assert!(r.resources.iter().all(|res| !res.version.is_empty()));
    drop(s);
}

const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

type DeltaResponse = envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;

/// The next response on `stream`, within 10 s.
async fn next(stream: &mut tonic::Streaming<DeltaResponse>) -> DeltaResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("no answer within 10 s")
        .unwrap()
        .unwrap()
}

/// Opens a delta stream for `web-sidecar-proxy` (no ACLs).
async fn delta_stream(
    grpc: String,
) -> (
    mpsc::Sender<DeltaDiscoveryRequest>,
    tonic::Streaming<DeltaResponse>,
) {
    let mut client = AggregatedDiscoveryServiceClient::connect(grpc)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let stream = client
        .delta_aggregated_resources(tonic::Request::new(ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    (tx, stream)
}

/// After a reconnect, Envoy reports the versions it has; a cluster the server sends because its
/// version differs warms in Envoy until its endpoints come again, so they are sent again too,
/// even though Envoy reported having them (else the cluster waits out the initial fetch timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_resends_endpoints_of_clusters_sent_after_a_reconnect() {
    let s = tokio::task::spawn_blocking(|| {
        let s = TestServer::start();
        let r = s.req("PUT", "/v1/agent/service/register", Some(&json!({"Name": "db", "Port": 5432}).to_string()), None);
        assert_eq!(r.status, 200, "{}", r.body);
        let r = s.req("PUT", "/v1/agent/service/register", Some(&json!({"Name": "web", "Port": 8080, "Connect": {"SidecarService": {"Port": 21500, "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191}]}}}}).to_string()), None);
        assert_eq!(r.status, 200, "{}", r.body);
        s
    })
    .await
    .unwrap();
    // First connection: learn the upstream cluster and its endpoints' version.
    let (tx, mut stream) = delta_stream(s.grpc.clone()).await;
    let request = |type_url: &str, subscribe: Vec<String>, versions: Vec<(String, String)>| {
        DeltaDiscoveryRequest {
            node: node("web-sidecar-proxy"),
            type_url: type_url.into(),
            resource_names_subscribe: subscribe,
            initial_resource_versions: versions.into_iter().collect(),
            ..Default::default()
        }
    };
    tx.send(request(CDS, vec![], vec![])).await.unwrap();
    let clusters = next(&mut stream).await;
    let db = clusters
        .resources
        .iter()
        .find(|r| r.name.starts_with("db."))
        .unwrap_or_else(|| {
            panic!(
                "{:?}",
                clusters
                    .resources
                    .iter()
                    .map(|r| &r.name)
                    .collect::<Vec<_>>()
            )
        })
        .name
        .clone();
    tx.send(request(EDS, vec![db.clone()], vec![]))
        .await
        .unwrap();
    let endpoints = next(&mut stream).await;
    assert_eq!(endpoints.type_url, EDS);
    let eds_version = endpoints.resources[0].version.clone();
    drop((tx, stream));

    // Reconnect as Envoy does: it has the endpoints, and a cluster version this server no
    // longer serves.
    let (tx, mut stream) = delta_stream(s.grpc.clone()).await;
    tx.send(request(
        EDS,
        vec![db.clone()],
        vec![(db.clone(), eds_version)],
    ))
    .await
    .unwrap();
    let first = next(&mut stream).await;
    assert_eq!(first.type_url, EDS);
    assert!(
        first.resources.is_empty(),
        "Envoy has them: {:?}",
        first.resources
    );
    tx.send(request(CDS, vec![], vec![(db.clone(), "stale".into())]))
        .await
        .unwrap();
    let clusters = next(&mut stream).await;
    assert_eq!(clusters.type_url, CDS);
    assert!(clusters.resources.iter().any(|r| r.name == db));
    let endpoints = next(&mut stream).await;
    assert_eq!(endpoints.type_url, EDS);
    assert_eq!(
        endpoints
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        vec![db.as_str()]
    );
    drop(s);
}
