//! A real server on 127.0.0.1:0 driven through a real HTTP client (ureq).

#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

pub struct TestServer {
    pub base: String,
    /// `http://127.0.0.1:PORT` of the xDS (gRPC) listener.
    pub grpc: String,
    pub dir: tempfile::TempDir,
    server: Option<server::Background>,
}

pub struct Resp {
    pub status: u16,
    pub body: String,
    pub index: Option<u64>,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut server::ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, tweak)
    }

    pub fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut server::ServerConfig)) -> Self {
        let mut config = server::ServerConfig::for_tests(dir.path());
        tweak(&mut config);
        let server = server::Background::start(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            config,
        )
        .expect("server did not start");
        TestServer {
            base: format!("http://{}", server.http_addr()),
            grpc: format!("http://{}", server.grpc_addr()),
            dir,
            server: Some(server),
        }
    }

    /// Stops the server and returns its data dir (to restart on it).
    pub fn stop(mut self) -> tempfile::TempDir {
        self.halt();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    fn halt(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.stop();
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build(),
        )
    }

    pub fn req(&self, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> Resp {
        let url = format!("{}{path}", self.base);
        let agent = Self::agent();
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            builder = builder.header("X-Consul-Token", t);
        }
        let req = builder.body(body.unwrap_or("").to_owned()).unwrap();
        let mut resp = agent.run(req).unwrap();
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect::<Vec<_>>();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        Resp {
            status,
            body,
            index,
            headers,
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path, None, None)
    }
    pub fn put(&self, path: &str, body: &str) -> Resp {
        self.req("PUT", path, Some(body), None)
    }
    pub fn delete(&self, path: &str) -> Resp {
        self.req("DELETE", path, None, None)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.halt();
    }
}
