//! The closed vocabularies of catalog records: a service instance's kind and a check's status,
//! each spelled exactly as Consul's JSON spells it (they are serialized into API answers, the
//! store's log and its snapshots, so a spelling never changes).
//!
//! Request bodies keep these fields as text and parse them in their own validation, so that a
//! wrong value is reported with Consul's message and in Consul's order; stored records and
//! everything after the edge use the enums. Depends only on serde and the catalog's error.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{CatalogError, invalid};

/// What a registered instance is (`Kind`): a typical service, a sidecar or one of the gateways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ServiceKind {
    /// An ordinary service (`""`, Consul's "typical").
    #[default]
    #[serde(rename = "")]
    Typical,
    #[serde(rename = "connect-proxy")]
    ConnectProxy,
    #[serde(rename = "terminating-gateway")]
    TerminatingGateway,
    #[serde(rename = "mesh-gateway")]
    MeshGateway,
    #[serde(rename = "ingress-gateway")]
    IngressGateway,
    #[serde(rename = "api-gateway")]
    ApiGateway,
}

impl ServiceKind {
    /// Every kind, in the order Consul's error message lists them.
    pub const ALL: [ServiceKind; 6] = [
        ServiceKind::Typical,
        ServiceKind::ConnectProxy,
        ServiceKind::TerminatingGateway,
        ServiceKind::MeshGateway,
        ServiceKind::IngressGateway,
        ServiceKind::ApiGateway,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Typical => "",
            ServiceKind::ConnectProxy => "connect-proxy",
            ServiceKind::TerminatingGateway => "terminating-gateway",
            ServiceKind::MeshGateway => "mesh-gateway",
            ServiceKind::IngressGateway => "ingress-gateway",
            ServiceKind::ApiGateway => "api-gateway",
        }
    }

    /// The kind a definition's `Kind` names.
    ///
    /// # Errors
    /// [`CatalogError::Invalid`] listing the kinds there are.
    pub fn parse(kind: &str) -> Result<Self, CatalogError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| {
                invalid(format!(
                    "Kind: invalid service kind {kind:?}: must be one of \"\", {}",
                    Self::ALL[1..]
                        .iter()
                        .map(|k| format!("{:?}", k.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health of a check (`Status`). Declared from best to worst, so the aggregate of several
/// checks is their maximum.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passing,
    Warning,
    /// A new check without a given status starts critical, as in Consul.
    #[default]
    Critical,
}

impl CheckStatus {
    pub const ALL: [CheckStatus; 3] = [
        CheckStatus::Passing,
        CheckStatus::Warning,
        CheckStatus::Critical,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    /// The status `s` spells (exactly, as Consul compares), if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The status of an instance with these checks: critical beats warning beats passing, and
    /// no checks at all is passing (Consul's rule).
    pub fn aggregate(statuses: impl IntoIterator<Item = CheckStatus>) -> Self {
        statuses.into_iter().max().unwrap_or(CheckStatus::Passing)
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
