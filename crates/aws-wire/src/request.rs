//! Signed requests to an AWS (or AWS-compatible) endpoint, as plain `http::Request`s any client
//! can send: the REST protocol (Lambda) and the JSON protocol (`X-Amz-Target`: SSM, tagging, SQS,
//! EventBridge). The `Host` header is set to the endpoint's authority exactly as signed, so a
//! client never substitutes its own spelling (ureq, for one, drops a default port).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::{
    Credentials,
    sigv4::{self, Scope},
};

/// Where a service is reached: `http[s]://host[:port]`, without a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    base: String,
    authority: String,
}

/// An endpoint URL that is not `http[s]://host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid endpoint {0:?}: want http[s]://host[:port]")]
pub struct EndpointError(pub String);

impl Endpoint {
    /// Parses `http[s]://host[:port]` (a trailing `/` is dropped).
    ///
    /// # Errors
    /// Another scheme, an empty authority, or a path.
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        let url = url.trim_end_matches('/');
        let authority = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| EndpointError(url.to_owned()))?;
        Ok(Self {
            base: url.to_owned(),
            authority: authority.to_owned(),
        })
    }

    /// AWS's public HTTPS endpoint of a service: `https://<host>.<region>.amazonaws.com`.
    pub fn aws(host: &str, region: &str) -> Self {
        let authority = format!("{host}.{region}.amazonaws.com");
        Self {
            base: format!("https://{authority}"),
            authority,
        }
    }

    /// The endpoint of one service as the SDKs choose it from `vars` (the environment):
    /// `AWS_ENDPOINT_URL_<service_id>` (e.g. `SSM`, `RESOURCE_GROUPS_TAGGING_API`), else
    /// `AWS_ENDPOINT_URL`, else AWS's public endpoint `https://<host>.<region>.amazonaws.com`.
    ///
    /// # Errors
    /// A configured URL that is not `http[s]://host[:port]`.
    pub fn from_vars(
        vars: &BTreeMap<String, String>,
        service_id: &str,
        host: &str,
        region: &str,
    ) -> Result<Self, EndpointError> {
        let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        match get(&format!("AWS_ENDPOINT_URL_{service_id}")).or_else(|| get("AWS_ENDPOINT_URL")) {
            Some(url) => Self::parse(url),
            None => Ok(Self::aws(host, region)),
        }
    }

    /// `http[s]://host[:port]`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `host[:port]`, as sent in `Host` and signed.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

/// The JSON protocol's version, which only changes the content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonProtocol {
    /// `application/x-amz-json-1.0` (SQS, DynamoDB).
    V1_0,
    /// `application/x-amz-json-1.1` (SSM, tagging, EventBridge).
    V1_1,
}

impl JsonProtocol {
    /// The request's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            JsonProtocol::V1_0 => "application/x-amz-json-1.0",
            JsonProtocol::V1_1 => "application/x-amz-json-1.1",
        }
    }
}

/// Why a request could not be built (a value that cannot stand in a header or a URI).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    HeaderValue(#[from] http::header::InvalidHeaderValue),
    #[error(transparent)]
    HeaderName(#[from] http::header::InvalidHeaderName),
    #[error(transparent)]
    Method(#[from] http::method::InvalidMethod),
    #[error(transparent)]
    Http(#[from] http::Error),
}

/// Signs requests for one identity in one region.
#[derive(Clone, Debug)]
pub struct Signer {
    credentials: Credentials,
    session_token: Option<String>,
    region: String,
}

impl Signer {
    /// A signer; `session_token` is sent (and signed) as `x-amz-security-token`.
    pub fn new(credentials: Credentials, session_token: Option<String>, region: &str) -> Self {
        Self {
            credentials,
            session_token,
            region: region.to_owned(),
        }
    }

    /// The keys it signs with.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The session token it sends, if any.
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }

    /// The region of its credential scope.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A signed request: `Host` (the endpoint's authority), then `headers` in order, then the
    /// session token, all signed with `x-amz-date` and `x-amz-content-sha256`.
    /// `path_and_query` must already be percent-encoded ([`sigv4::uri_encode`]).
    ///
    /// # Errors
    /// A method, header or URI that is not valid HTTP.
    #[allow(clippy::too_many_arguments)] // each is one part of the request; a struct adds nothing
    pub fn request<B: AsRef<[u8]>>(
        &self,
        endpoint: &Endpoint,
        service: &str,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: B,
        now: OffsetDateTime,
    ) -> Result<http::Request<B>, RequestError> {
        let mut map = http::HeaderMap::new();
        map.insert(
            http::header::HOST,
            http::HeaderValue::from_str(&endpoint.authority)?,
        );
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes())?,
                http::HeaderValue::from_str(value)?,
            );
        }
        if let Some(token) = &self.session_token {
            map.insert("x-amz-security-token", http::HeaderValue::from_str(token)?);
        }
        sigv4::sign(
            method,
            path_and_query,
            &mut map,
            body.as_ref(),
            &Scope {
                creds: &self.credentials,
                region: &self.region,
                service,
            },
            now,
        )?;
        let mut request = http::Request::builder()
            .method(http::Method::from_bytes(method.as_bytes())?)
            .uri(format!("{}{path_and_query}", endpoint.base))
            .body(body)?;
        *request.headers_mut() = map;
        Ok(request)
    }

    /// A signed JSON-protocol call: `POST /` with `X-Amz-Target: <target>` (e.g.
    /// `AmazonSSM.GetParameter`) and the protocol's content type.
    ///
    /// # Errors
    /// As [`Self::request`].
    pub fn json_request(
        &self,
        endpoint: &Endpoint,
        service: &str,
        protocol: JsonProtocol,
        target: &str,
        body: Vec<u8>,
        now: OffsetDateTime,
    ) -> Result<http::Request<Vec<u8>>, RequestError> {
        self.request(
            endpoint,
            service,
            "POST",
            "/",
            &[
                ("content-type", protocol.content_type()),
                ("x-amz-target", target),
            ],
            body,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sigv4::{RequestView, verify};

    fn signer(token: Option<&str>) -> Signer {
        Signer::new(
            Credentials {
                access_key: "AK".into(),
                secret_key: "SK".into(),
            },
            token.map(str::to_owned),
            "eu-west-1",
        )
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://ssm.example:443/").unwrap();
        assert_eq!(
            (e.base(), e.authority()),
            ("https://ssm.example:443", "ssm.example:443")
        );
        assert_eq!(
            Endpoint::aws("ssm", "eu-west-1").base(),
            "https://ssm.eu-west-1.amazonaws.com"
        );
        for bad in ["ftp://x", "http://", "http://h/p", "h:1"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        let mut vars = BTreeMap::new();
        let ssm = |v: &BTreeMap<String, String>| Endpoint::from_vars(v, "SSM", "ssm", "r1");
        assert_eq!(ssm(&vars).unwrap().base(), "https://ssm.r1.amazonaws.com");
        vars.insert("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:9".into());
        assert_eq!(ssm(&vars).unwrap().authority(), "127.0.0.1:9");
        vars.insert("AWS_ENDPOINT_URL_SSM".into(), " https://s:1 ".into());
        assert_eq!(ssm(&vars).unwrap().base(), "https://s:1");
        vars.insert("AWS_ENDPOINT_URL_SSM".into(), "s:1".into());
        assert!(ssm(&vars).is_err());
    }

    #[test]
    fn a_json_call_is_signed_with_its_target_host_and_token() {
        let now = OffsetDateTime::now_utc();
        let endpoint = Endpoint::parse("http://127.0.0.1:9001").unwrap();
        let s = signer(Some("TOKEN"));
        let req = s
            .json_request(
                &endpoint,
                "ssm",
                JsonProtocol::V1_1,
                "AmazonSSM.GetParameter",
                br#"{"Name":"/x"}"#.to_vec(),
                now,
            )
            .unwrap();
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri(), "http://127.0.0.1:9001/");
        let h = req.headers();
        assert_eq!(h["host"], "127.0.0.1:9001");
        assert_eq!(h["content-type"], "application/x-amz-json-1.1");
        assert_eq!(h["x-amz-target"], "AmazonSSM.GetParameter");
        assert_eq!(h["x-amz-security-token"], "TOKEN");
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-amz-target"),
            "{auth}"
        );
        let view = RequestView {
            method: "POST",
            path: "/",
            query: "",
            headers: h,
            body: req.body(),
        };
        verify(&view, s.credentials(), "eu-west-1", "ssm", now).unwrap();
    }

    #[test]
    fn a_rest_call_keeps_its_encoded_target() {
        let now = OffsetDateTime::now_utc();
        let endpoint = Endpoint::parse("http://h:1").unwrap();
        let s = signer(None);
        let path = format!(
            "/2015-03-31/functions/{}?Qualifier=1",
            sigv4::uri_encode("arn:aws:lambda:r:1:function:f", true)
        );
        let req = s
            .request(&endpoint, "lambda", "GET", &path, &[], &b""[..], now)
            .unwrap();
        assert_eq!(
            req.uri(),
            "http://h:1/2015-03-31/functions/arn%3Aaws%3Alambda%3Ar%3A1%3Afunction%3Af?Qualifier=1"
        );
        assert!(req.headers().get("x-amz-security-token").is_none());
        let (path, query) = path.split_once('?').unwrap();
        let view = RequestView {
            method: "GET",
            path,
            query,
            headers: req.headers(),
            body: b"",
        };
        verify(&view, s.credentials(), "eu-west-1", "lambda", now).unwrap();
    }
}
