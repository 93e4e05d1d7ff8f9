//! Serves the web UI at `/ui/` (Consul's path) from the assets built into the binary (the `ui`
//! crate), with an `ETag` per asset and a strict Content-Security-Policy: scripts, styles and
//! requests only from this server, no inline script, so the page makes no outside request and
//! injected markup cannot run. `/` redirects to `/ui/`.
//!
//! The UI reads and writes through the ordinary HTTP API with the user's token, so it is bound
//! by the same ACL rules; this module serves bytes only.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Content-Security-Policy of every UI answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `/` and `/ui`: a 302 to the UI's page (as Consul answers `/`).
pub async fn redirect() -> Response {
    (StatusCode::FOUND, [(header::LOCATION, "/ui/")]).into_response()
}

/// `/ui/`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("", &headers)
}

/// `/ui/{*path}`: an asset; the page itself for any other path under `/ui/` that has no file
/// extension (a bookmarked client-side route), a 404 otherwise.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let found = ui::asset(path).or_else(|| {
        let last = path.rsplit('/').next().unwrap_or("");
        (!last.contains('.')).then(|| ui::asset("")).flatten()
    });
    let Some(a) = found else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no UI asset {path:?}"),
        )
            .into_response();
    };
    let etag = format!("\"{:016x}\"", a.hash);
    let mut out = HeaderMap::new();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    // Revalidate every time: an upgraded binary must never serve yesterday's module graph, and
    // a 304 costs one round trip on loopback.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    (StatusCode::OK, out, a.bytes).into_response()
}
