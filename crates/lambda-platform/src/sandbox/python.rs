//! The interpreter that `python3.x` runtimes run on (`python -m awslambdaric`), checked before
//! the first Python sandbox starts. Without the check, an interpreter without `awslambdaric`
//! starts, fails its import and exits, and every invoke reports a bare `Runtime.ExitError`; with
//! it, the invoke says what is missing and how to fix it (`Runtime.Unavailable`). Success is
//! remembered; a failure is checked again at the next cold start, so installing `awslambdaric`
//! needs no restart.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

/// The configured interpreter and whether it has been seen to work.
#[derive(Debug)]
pub(crate) struct PythonInterpreter {
    path: PathBuf,
    usable: AtomicBool,
}

/// Upper bound of one check (an interpreter start and one import).
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

impl PythonInterpreter {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            usable: AtomicBool::new(false),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok` when the interpreter imports `awslambdaric`; otherwise the message of the invoke's
    /// `Runtime.Unavailable` error, naming the interpreter, what failed and the fix.
    pub(crate) async fn check(&self) -> Result<(), String> {
        if self.usable.load(Ordering::Relaxed) {
            return Ok(());
        }
        let run = tokio::process::Command::new(&self.path)
            .args(["-c", "import awslambdaric"])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let problem = match tokio::time::timeout(CHECK_TIMEOUT, run).await {
            Ok(Ok(out)) if out.status.success() => {
                self.usable.store(true, Ordering::Relaxed);
                return Ok(());
            }
            Ok(Ok(out)) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
                format!(
                    "cannot import awslambdaric ({})",
                    last.unwrap_or("exit status without a message").trim()
                )
            }
            Ok(Err(e)) => format!("cannot be started ({e})"),
            Err(_) => format!("did not answer within {}s", CHECK_TIMEOUT.as_secs()),
        };
        Err(format!(
            "python runtimes need a Python interpreter with awslambdaric, and {} {problem}: pass -python PATH to `lambdamesh lambda serve` (or set LAMBDAMESH_PYTHON), e.g. the project's .venv/bin/python",
            self.path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_interpreter_is_named_with_the_fix() {
        let p = PythonInterpreter::new("/nonexistent/python".into());
        let err = p.check().await.unwrap_err();
        assert!(
            err.contains("/nonexistent/python cannot be started"),
            "{err}"
        );
        assert!(err.contains("pass -python"), "{err}");
    }

    #[tokio::test]
    async fn an_interpreter_without_awslambdaric_is_named() {
        // `sh -c "import awslambdaric"` fails like an interpreter lacking the module.
        let p = PythonInterpreter::new("/bin/sh".into());
        let err = p.check().await.unwrap_err();
        assert!(err.contains("/bin/sh cannot import awslambdaric"), "{err}");
    }
}
