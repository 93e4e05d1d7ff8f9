//! Who signs: static keys ([`Credentials`]) and where a caller finds them, in the SDKs' order:
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN` first, then a profile's static
//! keys in the shared files ([`crate::profile`]). Roles, SSO and instance metadata are not
//! supported, and are reported by name rather than skipped.

use std::collections::BTreeMap;

use crate::profile::{self, ProfileError};

/// Static keys: what SigV4 signs with, and what a verifier accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
}

/// Keys found for a caller, with the session token temporary keys need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub credentials: Credentials,
    /// Sent (and signed) as `x-amz-security-token`.
    pub session_token: Option<String>,
    /// The shared-file profile they came from; `None` for the environment.
    pub profile: Option<String>,
}

/// Why no usable credentials were found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile with static keys in ~/.aws/credentials (AWS_PROFILE; SSO, roles and instance metadata are not supported)"
    )]
    NoCredentials,
    #[error("{present} is set but {missing} is not")]
    HalfEnvironmentKeys {
        present: &'static str,
        missing: &'static str,
    },
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// Credentials from `vars` (the process environment, possibly merged with flags): the
/// environment's keys, else the selected profile's.
///
/// # Errors
/// Half a key pair in the environment, no keys anywhere, or a profile that cannot be used.
pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Resolved, CredentialsError> {
    let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let half = |present, missing| CredentialsError::HalfEnvironmentKeys { present, missing };
    match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (Some(a), Some(s)) => Ok(Resolved {
            credentials: Credentials {
                access_key: a.to_owned(),
                secret_key: s.to_owned(),
            },
            session_token: get("AWS_SESSION_TOKEN").map(str::to_owned),
            profile: None,
        }),
        (Some(_), None) => Err(half("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
        (None, Some(_)) => Err(half("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")),
        (None, None) => {
            let p = profile::resolve(vars)?.ok_or(CredentialsError::NoCredentials)?;
            Ok(Resolved {
                credentials: Credentials {
                    access_key: p.access_key,
                    secret_key: p.secret_key,
                },
                session_token: p.session_token,
                profile: Some(p.profile),
            })
        }
    }
}

/// [`from_vars`] over this process's environment.
///
/// # Errors
/// As [`from_vars`].
pub fn from_env() -> Result<Resolved, CredentialsError> {
    from_vars(&std::env::vars().collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_environment_first_then_a_profile() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[ci]\naws_access_key_id = P\naws_secret_access_key = PS\naws_session_token = PT\n",
        )
        .unwrap();
        let file = file.display().to_string();
        let home = dir.path().display().to_string();
        let from_profile = from_vars(&vars(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &file),
            ("AWS_PROFILE", "ci"),
            ("HOME", &home),
        ]))
        .unwrap();
        assert_eq!(from_profile.credentials.access_key, "P");
        assert_eq!(from_profile.session_token.as_deref(), Some("PT"));
        assert_eq!(from_profile.profile.as_deref(), Some("ci"));
        let from_env = from_vars(&vars(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &file),
            ("AWS_PROFILE", "ci"),
            ("AWS_ACCESS_KEY_ID", " E "),
            ("AWS_SECRET_ACCESS_KEY", "ES"),
        ]))
        .unwrap();
        assert_eq!(
            from_env,
            Resolved {
                credentials: Credentials {
                    access_key: "E".into(),
                    secret_key: "ES".into()
                },
                session_token: None,
                profile: None,
            }
        );
    }

    #[test]
    fn half_a_pair_or_nothing_is_an_error() {
        assert_eq!(
            from_vars(&vars(&[("HOME", "/nonexistent")])),
            Err(CredentialsError::NoCredentials)
        );
        assert_eq!(
            from_vars(&vars(&[("AWS_SECRET_ACCESS_KEY", "s")]))
                .unwrap_err()
                .to_string(),
            "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"
        );
    }
}
