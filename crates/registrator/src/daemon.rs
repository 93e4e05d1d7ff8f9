//! The long-running mode: a full sync at start and every `sync_interval`, plus events from an
//! SQS queue fed by EventBridge (the CloudTrail rule of the reference's Terraform module, with
//! an SQS target instead of the function). Both feed the same [`Engine`].

use std::{future::Future, time::Duration};

use serde_json::Value;
use tracing::{info, warn};

use crate::{
    aws::{Aws, AwsError},
    consul::Consul,
    engine::{Engine, EngineError},
};

/// Runs until `shutdown` resolves.
pub async fn run<A: Aws, C: Consul>(engine: Engine<A, C>, shutdown: impl Future<Output = ()>) {
    let syncs = {
        let engine = engine.clone();
        async move {
            let mut tick = tokio::time::interval(engine.config().sync_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                engine.full_sync().await;
            }
        }
    };
    let queue = async {
        match engine.config().queue_url.clone() {
            Some(url) => consume(&engine, &url).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = shutdown => info!("shutting down"),
        () = syncs => {}
        () = queue => {}
    }
}

/// Reads the queue forever. A message is deleted once handled, or when it can never be handled
/// (bad JSON, unknown event); otherwise it reappears after its visibility timeout and is retried
/// (a redrive policy on the queue bounds that).
async fn consume<A: Aws, C: Consul>(engine: &Engine<A, C>, url: &str) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let messages = match engine.aws().receive_messages(url.to_owned(), 20).await {
            Ok(m) => {
                backoff = Duration::from_millis(500);
                m
            }
            Err(e) => {
                warn!(queue = url, error = %e, "cannot read the event queue");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        for m in messages {
            let done = match serde_json::from_str::<Value>(&m.body) {
                Err(e) => {
                    warn!(error = %e, "queue message is not JSON; dropped");
                    true
                }
                Ok(event) => match engine.handle(&event).await {
                    Ok(outcome) => {
                        info!(?outcome, "event handled");
                        true
                    }
                    Err(EngineError::Event(_)) => true,
                    Err(_) => false,
                },
            };
            if done {
                match engine
                    .aws()
                    .delete_message(url.to_owned(), m.receipt.clone())
                    .await
                {
                    Ok(()) | Err(AwsError::NotFound(_)) => {}
                    Err(e) => warn!(error = %e, "cannot delete queue message"),
                }
            }
        }
    }
}
