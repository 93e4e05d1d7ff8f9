//! AWS's wire, for the callers that must stay small and for the local platform that answers them:
//! SigV4 signing and verification ([`sigv4`]), credentials from the environment or AWS's shared
//! files ([`credentials`], [`profile`]), signed request building for the REST and JSON protocols
//! ([`request`]), AWS error answers ([`answer`]) and, with the `ureq` feature, a blocking sender
//! ([`blocking`]).
//!
//! It must stay light enough for a Lambda extension that starts in every sandbox: no async
//! runtime, no hyper, no AWS SDK and nothing of lambdamesh. Requests are plain `http` types, so
//! any client sends them (ureq here, hyper in the platform's test client).

pub mod answer;
#[cfg(feature = "ureq")]
pub mod blocking;
pub mod credentials;
pub mod profile;
pub mod request;
pub mod sigv4;

pub use answer::ErrorAnswer;
pub use credentials::Credentials;
pub use request::{Endpoint, JsonProtocol, Signer};
