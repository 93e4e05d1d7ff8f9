//! The inter-server protocol's wire (`docs/multi-dc.md`): one request and one answer per TLS
//! connection, each a frame of a 4-byte big-endian length and that many bytes of JSON. Requests
//! are decoded once here into [`Request`] (unknown fields and ops are errors, answered as
//! `BadRequest`); nothing else reads the bytes.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Largest request frame a server accepts: roots and an intermediate are a few KiB; a bigger
/// frame is a peer that is not speaking this protocol.
pub const MAX_FRAME: usize = 1 << 20;

/// Largest answer a caller accepts: a forwarded read of a big catalog.
pub const MAX_ANSWER: usize = 16 << 20;

/// The protocol version both sides speak; a request names it so a later version can refuse an
/// old peer by name instead of misreading it.
pub const VERSION: u32 = 1;

/// A request from one server to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Op", deny_unknown_fields)]
pub enum Request {
    /// A secondary asks the primary to certify its intermediate key (first join, renewal, or
    /// after a root rotation). `Token` authorizes a first join (`operator:write`); a secondary
    /// that already presents its server certificate needs none.
    SignIntermediate {
        #[serde(rename = "Version")]
        version: u32,
        #[serde(rename = "Datacenter")]
        datacenter: String,
        /// Base64 of the uncompressed P-256 point.
        #[serde(rename = "PublicKey")]
        public_key: String,
        /// Base64 of the ECDSA signature over the possession message.
        #[serde(rename = "Proof")]
        proof: String,
        #[serde(rename = "Token", default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// The primary's roots, answered when their index passes `MinIndex` or after `WaitMs`
    /// (a blocking query, as `?index=&wait=` on the HTTP API). Needs a server certificate.
    Roots {
        #[serde(rename = "Version")]
        version: u32,
        #[serde(rename = "MinIndex")]
        min_index: u64,
        #[serde(rename = "WaitMs")]
        wait_ms: u64,
        /// The caller's own datacenter's mesh gateways that carry servers' traffic
        /// (`HOST:PORT`), so the primary and the other datacenters can reach it.
        #[serde(
            rename = "MeshGateways",
            default,
            skip_serializing_if = "Vec::is_empty"
        )]
        mesh_gateways: Vec<String>,
    },
    /// Every config entry of the primary (intentions included), answered when their index
    /// passes `MinIndex` or after `WaitMs`: what a secondary replicates. Needs a server
    /// certificate.
    ConfigEntries {
        #[serde(rename = "Version")]
        version: u32,
        #[serde(rename = "MinIndex")]
        min_index: u64,
        #[serde(rename = "WaitMs")]
        wait_ms: u64,
    },
    /// An HTTP API request of the answering datacenter, on behalf of a client of the caller's:
    /// a read with `?dc=` (blocking when the query has `index`), or a secondary's config-entry
    /// or intention write sent to the primary. Needs a server certificate.
    Forward {
        #[serde(rename = "Version")]
        version: u32,
        /// `GET` (default), or `PUT`/`DELETE`/`POST` for a write to the primary.
        #[serde(rename = "Method", default = "get_method")]
        method: String,
        #[serde(rename = "Body", default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// The datacenter the caller means: the answering server checks it is its own.
        #[serde(rename = "Datacenter")]
        datacenter: String,
        /// Path and query string, without `dc`.
        #[serde(rename = "PathAndQuery")]
        path_and_query: String,
        #[serde(rename = "Token", default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
}

fn get_method() -> String {
    "GET".to_owned()
}

/// One of the primary's roots, as a secondary stores it (never with a key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "CommonName")]
    pub common_name: String,
    #[serde(rename = "SerialNumber")]
    pub serial_number: u64,
    #[serde(rename = "SigningKeyID")]
    pub signing_key_id: String,
    #[serde(rename = "NotBefore")]
    pub not_before: String,
    #[serde(rename = "NotAfter")]
    pub not_after: String,
    #[serde(rename = "NotAfterUnix")]
    pub not_after_unix: i64,
    #[serde(rename = "RootCert")]
    pub root_cert: String,
    #[serde(rename = "Active")]
    pub active: bool,
    #[serde(rename = "MaxLeafTTLSecs")]
    pub max_leaf_ttl_secs: u64,
    #[serde(rename = "RetiredAtUnix")]
    pub retired_at_unix: Option<i64>,
}

/// The primary's trust domain and roots at a store index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roots {
    #[serde(rename = "ClusterID")]
    pub cluster_id: String,
    #[serde(rename = "Index")]
    pub index: u64,
    #[serde(rename = "ActiveRootID")]
    pub active_root_id: String,
    #[serde(rename = "Roots")]
    pub roots: Vec<Root>,
    /// The primary's `IntermediateCertTTL` (a secondary's intermediates live this long).
    #[serde(rename = "IntermediateCertTTLSecs")]
    pub intermediate_cert_ttl_secs: u64,
    /// The datacenters the answering server knows, its own first (`/v1/catalog/datacenters`).
    #[serde(rename = "Datacenters", default)]
    pub datacenters: Vec<String>,
    /// Each known datacenter's mesh gateways that carry servers' traffic (`HOST:PORT`).
    #[serde(rename = "MeshGateways", default)]
    pub mesh_gateways: std::collections::BTreeMap<String, Vec<String>>,
}

/// The primary's config entries at an index, in Consul's JSON (`ConfigEntry::to_json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigEntries {
    #[serde(rename = "Index")]
    pub index: u64,
    #[serde(rename = "Entries")]
    pub entries: Vec<serde_json::Value>,
}

/// An HTTP answer of another datacenter, as its API gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAnswer {
    #[serde(rename = "Status")]
    pub status: u16,
    /// The `X-Consul-*` and `Content-Type` headers.
    #[serde(rename = "Headers")]
    pub headers: Vec<(String, String)>,
    #[serde(rename = "Body")]
    pub body: String,
}

/// A signed intermediate and the roots it chains to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intermediate {
    #[serde(rename = "CertPEM")]
    pub cert_pem: String,
    #[serde(rename = "CommonName")]
    pub common_name: String,
    /// `ID` of the root that signed it (the active one).
    #[serde(rename = "RootID")]
    pub root_id: String,
    #[serde(rename = "Roots")]
    pub roots: Roots,
}

/// What a server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Answer {
    Roots(Roots),
    Intermediate(Intermediate),
    Http(HttpAnswer),
    ConfigEntries(ConfigEntries),
    Error(ErrorAnswer),
}

/// A refusal: a stable code for the program, a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorAnswer {
    #[serde(rename = "Code")]
    pub code: ErrorCode,
    #[serde(rename = "Message")]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Not a request of this protocol (bad frame, JSON, op or field).
    BadRequest,
    /// The caller is not allowed (no server certificate, a bad token, a proof that fails).
    PermissionDenied,
    /// This server cannot do it (not the primary, no CA yet).
    Unavailable,
    /// Anything else on this side.
    Internal,
}

impl Answer {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Answer::Error(ErrorAnswer {
            code,
            message: message.into(),
        })
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a message of the inter-server protocol: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes a request's JSON (the frame's payload).
///
/// # Errors
/// Anything that is not exactly a [`Request`].
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Decodes an answer's JSON.
///
/// # Errors
/// Anything that is not exactly an [`Answer`].
pub fn decode_answer(bytes: &[u8]) -> Result<Answer, WireError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Reads one frame's payload.
///
/// # Errors
/// The connection fails or the frame is over [`MAX_FRAME`].
pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, WireError> {
    read_frame_up_to(r, MAX_FRAME).await
}

/// Reads one frame's payload of at most `max` bytes.
///
/// # Errors
/// The connection fails or the frame is over `max`.
pub async fn read_frame_up_to(
    r: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<Vec<u8>, WireError> {
    let len = r.read_u32().await? as usize;
    if len > max {
        return Err(WireError::TooLarge(len));
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes one value as a frame and flushes.
///
/// # Errors
/// The connection fails or the value is over [`MAX_FRAME`].
pub async fn write_frame(
    w: &mut (impl AsyncWrite + Unpin),
    value: &impl Serialize,
) -> Result<(), WireError> {
    let bytes = serde_json::to_vec(value)?;
    if bytes.len() > MAX_ANSWER {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let len = u32::try_from(bytes.len()).map_err(|_| WireError::TooLarge(bytes.len()))?;
    w.write_u32(len).await?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_have_one_json_shape() {
        let r = Request::Roots {
            version: VERSION,
            min_index: 7,
            wait_ms: 1000,
            mesh_gateways: vec![],
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"Op":"Roots","Version":1,"MinIndex":7,"WaitMs":1000}"#
        );
        assert_eq!(decode_request(text.as_bytes()).unwrap(), r);
        for bad in [
            r#"{"Op":"Roots","Version":1,"MinIndex":7,"WaitMs":1000,"Extra":1}"#,
            r#"{"Op":"Delete"}"#,
            r#"{"Op":"Roots","Version":1,"MinIndex":-1,"WaitMs":0}"#,
            "[]",
        ] {
            assert!(decode_request(bad.as_bytes()).is_err(), "{bad}");
        }
        let e = Answer::error(ErrorCode::PermissionDenied, "no");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"Error":{"Code":"PermissionDenied","Message":"no"}}"#
        );
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let r = Request::Roots {
            version: 1,
            min_index: 0,
            wait_ms: 0,
            mesh_gateways: vec![],
        };
        write_frame(&mut a, &r).await.unwrap();
        let got = decode_request(&read_frame(&mut b).await.unwrap()).unwrap();
        assert_eq!(got, r);
        a.write_u32(u32::MAX).await.unwrap();
        assert!(matches!(
            read_frame(&mut b).await,
            Err(WireError::TooLarge(_))
        ));
    }
}
