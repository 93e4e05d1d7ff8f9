//! The Lambda registrator: keeps the mesh in step with the Lambda functions of an account. A
//! function tagged `serverless.consul.hashicorp.com/v1alpha1/lambda/enabled=true` becomes a
//! Consul service on `NODE_NAME` (tagged `managed-by-lambda-registrator`) with a
//! `service-defaults` entry carrying the `builtin/aws/lambda` extension, and, when an extension
//! data prefix is set, its mTLS material in Parameter Store. It is a drop-in replacement for
//! HashiCorp's Go registrator (same tags, environment and writes) that fixes its known faults.
//!
//! Layout: pure parts first — [`config`] (environment → typed settings), [`tags`] (tags →
//! desired services), [`event`] (CloudTrail/scheduled event decoding), [`plan`] (desired ×
//! actual → writes) — then I/O behind the [`aws::Aws`] and [`consul::Consul`] traits, the
//! [`engine`] that runs a full sync or one event, and the ways to run it ([`daemon`],
//! [`lambda_runtime`]), plus the counters and their HTTP endpoint ([`metrics`]).
//!
//! Its wires are shared crates: `aws-wire` signs and sends AWS requests and finds credentials,
//! `consul-client` is the Consul client, and `mesh-model` owns the Lambda marking it writes into
//! `service-defaults`. It must not depend on the server, store, xds or lambda-platform crates
//! (`ca` is used only to read a certificate's validity; the platform is a test dependency): it
//! speaks Consul's and AWS's public wire formats only, so it works against real Consul and AWS as
//! well as ours.

pub mod aws;
pub mod config;
pub mod consul;
pub mod daemon;
pub mod engine;
pub mod event;
pub mod lambda_runtime;
pub mod metrics;
pub mod plan;
pub mod setup;
pub mod tags;

pub use config::Config;
pub use engine::{Engine, EngineError, EventOutcome, SyncReport};
