//! `lambdamesh-extension`: a Lambda extension through which a function calls mesh services.
//! The function calls `http://127.0.0.1:<port>`; each connection goes over mTLS, as the
//! function's own mesh identity (the leaf the registrator stored in Parameter Store), through
//! the mesh gateway to the upstream's sidecar. A drop-in for HashiCorp's
//! `consul-lambda-extension`: same variables, same Parameter Store data, same layer layout
//! (`extensions/lambdamesh-extension`); see `docs/extension.md`.
//!
//! Modules: [`config`] and [`upstream`] (the environment, pure), [`material`] and [`der`] (the
//! stored material, pure), [`verify`] and [`tls`] (who the peer must be, rustls configurations),
//! [`state`] (material in use, refresh), [`ssm`] and [`extensions_api`] (the two AWS wires),
//! [`proxy`] (listeners, connections, the copy loop), [`run`] (the lifecycle).
//!
//! It runs in every sandbox of every function that uses it, so it must stay small and start in
//! milliseconds: no async runtime (std threads, poll(2) through rustix), rustls with ring, no
//! dependency on the control plane's crates beyond `mesh-model`'s naming and `aws-wire`.

pub mod config;
pub mod der;
pub mod extensions_api;
pub mod logging;
pub mod material;
pub mod proxy;
pub mod run;
pub mod ssm;
pub mod state;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tls;
pub mod upstream;
pub mod verify;
