//! The counters over HTTP for a Prometheus scraper: one route (every request gets the text), one
//! request per connection, bounded connections, back-off on accept errors, and a drain when the
//! shutdown future resolves. Deliberately not a general HTTP server: it reads at most one
//! request head and never a body.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};
use tracing::{debug, warn};

use super::Metrics;

/// Most connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 64;
/// Longest a client may take to send its request and read the answer.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// How long open connections may take to finish once shutdown begins.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);
/// Pause after a failed accept (EMFILE and friends) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `metrics` on `listener` until `shutdown` resolves, then lets open connections finish
/// (up to a short deadline).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        conns.spawn(async move {
            if tokio::time::timeout(CONNECTION_DEADLINE, answer(stream, &metrics))
                .await
                .is_err()
            {
                debug!("metrics: connection timed out");
            }
            drop(permit);
        });
        // Reap finished connections so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(DRAIN_DEADLINE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// Reads (the start of) one request and answers with the counters.
async fn answer(mut stream: TcpStream, metrics: &Metrics) {
    let mut buf = [0u8; 2048];
    let _ = stream.read(&mut buf).await;
    let body = metrics.render();
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        telemetry::text::CONTENT_TYPE,
        body.len()
    );
    if let Err(e) = stream.write_all(resp.as_bytes()).await {
        debug!(error = %e, "metrics: cannot answer");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::metrics::add;

    #[tokio::test]
    async fn answers_with_the_counters_and_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        add(&metrics.upserts, 2);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics, async {
            let _ = stopped.await;
        }));
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{text}"
        );
        assert!(
            text.contains("lambda_registrator_upserts_total 2\n"),
            "{text}"
        );
        stop.send(()).unwrap();
        server.await.unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
