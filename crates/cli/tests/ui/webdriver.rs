//! A small WebDriver client over HTTP (ureq) driving Debian's headless `chromium` through
//! `chromedriver`: both bound to loopback, a temporary profile, chromedriver killed on drop
//! (it ends its browser with it). `scripts/setup.sh` installs both.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// How long `wait` polls before it fails the test (generous: a loaded machine; the point of
/// a wait is that something happens without a reload, not how fast).
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: ureq::Agent,
    _profile: tempfile::TempDir,
}

fn http() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build(),
    )
}

fn value(mut r: ureq::http::Response<ureq::Body>, what: &str) -> Value {
    let status = r.status().as_u16();
    let v: Value = r
        .body_mut()
        .read_json()
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e})"));
    assert!(status < 300, "{what}: WebDriver answered {status}: {v}");
    v["value"].clone()
}

impl Browser {
    /// A browser with a 1280×800 window.
    pub fn start() -> Browser {
        Self::start_sized(1280, 800)
    }

    pub fn start_sized(width: u32, height: u32) -> Browser {
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is not installed: run ./scripts/setup.sh (apt chromium-driver)");
        let port = test_support::free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = http();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).call()
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut options = json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--hide-scrollbars",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let r = b
            .http
            .post(format!("{}/session", b.base))
            .send_json(&caps)
            .expect("new session");
        let v = value(r, "new session");
        b.session = v["sessionId"].as_str().expect("sessionId").to_owned();
        b
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(self.url(path))
            .send_json(&body)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        value(r, path)
    }

    pub fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
    }

    /// Polls `script` until it returns something truthy; fails naming `what` and the page.
    pub fn wait(&self, what: &str, script: &str) -> Value {
        self.wait_up_to(WAIT, what, script)
    }

    /// [`Browser::wait`] with a deadline of its own (for what a whole topology must start).
    pub fn wait_up_to(&self, limit: Duration, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.js(script, vec![]);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; page text:\n{}\nconsole: {}",
                    self.text("body"),
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The text of the first element matching `css` ("" when none).
    pub fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? (e.innerText ?? e.textContent) : '';",
            vec![json!(css)],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn element(&self, css: &str) -> String {
        let v = self.post("/element", json!({ "using": "css selector", "value": css }));
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    /// Clicks like a user (WebDriver's element click: scrolled into view, hit-tested).
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.post(&format!("/element/{id}/click"), json!({}));
    }

    /// Clears a field and types `text` into it key by key.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.post(&format!("/element/{id}/clear"), json!({}));
        self.post(&format!("/element/{id}/value"), json!({ "text": text }));
    }

    /// Picks an `<option>` of a `<select>` by value.
    pub fn select(&self, css: &str, value: &str) {
        self.click(&format!("{css} option[value=\"{value}\"]"));
    }

    /// The browser console's messages so far (errors included).
    pub fn console(&self) -> String {
        let r = self
            .http
            .post(self.url("/se/log"))
            .send_json(json!({ "type": "browser" }));
        match r {
            Ok(mut r) => r.body_mut().read_to_string().unwrap_or_default(),
            Err(e) => e.to_string(),
        }
    }

    /// A PNG of the viewport.
    #[allow(dead_code)] // the screenshot tool uses it, the tests do not
    pub fn screenshot(&self) -> Vec<u8> {
        let r = self
            .http
            .get(self.url("/screenshot"))
            .call()
            .expect("screenshot");
        let v = value(r, "screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.http.delete(self.url("")).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
