//! The web UI's assets: plain ES modules, one CSS file and the page that loads them, compiled
//! into the binary with `include_bytes!` so the server needs no extra process or files. There is
//! no JavaScript toolchain: the files under `assets/` are what the browser runs.
//!
//! This crate only holds bytes: serving (headers, ETags, the Content-Security-Policy) is the
//! server's (`server::ui`). It must not depend on anything.

/// One asset: its bytes, its media type and a content hash for `ETag`.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub bytes: &'static [u8],
    pub content_type: &'static str,
    /// FNV-1a of the bytes, computed at compile time.
    pub hash: u64,
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

macro_rules! assets {
    ($($path:literal => $ct:expr),* $(,)?) => {
        const ASSETS: &[(&str, Asset)] = &[$(
            ($path, Asset {
                bytes: include_bytes!(concat!("../assets/", $path)),
                content_type: $ct,
                hash: fnv1a(include_bytes!(concat!("../assets/", $path))),
            }),
        )*];
    };
}

const JS: &str = "text/javascript; charset=utf-8";

assets! {
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "live.js" => JS,
    "pages/services.js" => JS,
    "pages/service.js" => JS,
    "pages/intentions.js" => JS,
    "pages/config.js" => JS,
    "pages/gateways.js" => JS,
    "pages/migrations.js" => JS,
    "pages/login.js" => JS,
}

/// The asset at `path` (relative to `/ui/`; empty is the page itself).
pub fn asset(path: &str) -> Option<Asset> {
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

/// Every asset path (for tests and the page-weight figure).
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(p, _)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_found_with_its_type() {
        assert!(asset("").is_some_and(|a| a.content_type.starts_with("text/html")));
        assert!(asset("app.js").is_some_and(|a| a.content_type.starts_with("text/javascript")));
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("nope.js").is_none());
        for p in paths() {
            assert!(asset(p).is_some_and(|a| !a.bytes.is_empty()), "{p}");
        }
    }

    #[test]
    fn hashes_differ_per_content() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(
            asset("app.js").map(|a| a.hash),
            asset("app.js").map(|a| a.hash)
        );
    }
}
