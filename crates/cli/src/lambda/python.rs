//! Which Python interpreter `lambda serve` runs `python3.x` functions on when `-python` and
//! `LAMBDAMESH_PYTHON` are not given. The system `python3` rarely has `awslambdaric`; the
//! project's setup installs it in a venv. So the first of these that imports `awslambdaric` is
//! used:
//!
//! 1. the active venv (`$VIRTUAL_ENV/bin/python`);
//! 2. `python` beside the `lambdamesh` that was run, as typed (`.venv/bin/lambdamesh`, the
//!    link `scripts/setup.sh` makes, sits next to the venv's `python`);
//! 3. `.venv/bin/python` in the current directory or a parent (inside a checkout), then in a
//!    parent of the binary's real location (`<checkout>/target/debug/lambdamesh`);
//! 4. the newest complete venv of the setup's cache (`~/.cache/lambdamesh/venv-*`, or
//!    `$LAMBDAMESH_CACHE`), where the default build also lives;
//! 5. `python3` on the `PATH`.
//!
//! When none works, the last one is used anyway and each Python invoke answers
//! `Runtime.Unavailable` saying what is missing (the platform checks before a cold start).

use std::path::{Path, PathBuf};

/// The interpreter to use, and whether it was seen to import `awslambdaric`.
pub fn find() -> (PathBuf, bool) {
    let candidates = candidates(
        std::env::var_os("VIRTUAL_ENV").map(PathBuf::from),
        std::env::args_os().next().map(PathBuf::from),
        std::env::current_dir().ok(),
        std::env::current_exe().ok(),
        cache_dir(),
    );
    for c in &candidates {
        if c.is_file() && has_awslambdaric(c) {
            return (c.clone(), true);
        }
    }
    (
        PathBuf::from("python3"),
        has_awslambdaric(Path::new("python3")),
    )
}

fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("LAMBDAMESH_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lambdamesh")))
}

/// The places to look, in order (pure, for tests; `python3` on the PATH is the caller's last
/// resort).
fn candidates(
    virtual_env: Option<PathBuf>,
    argv0: Option<PathBuf>,
    cwd: Option<PathBuf>,
    exe: Option<PathBuf>,
    cache: Option<PathBuf>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(v) = virtual_env {
        out.push(v.join("bin/python"));
    }
    if let Some(dir) = argv0.and_then(|a| invoked_dir(&a)) {
        out.push(dir.join("python"));
    }
    for start in [cwd, exe.and_then(|e| e.parent().map(Path::to_path_buf))]
        .into_iter()
        .flatten()
    {
        out.extend(start.ancestors().map(|d| d.join(".venv/bin/python")));
    }
    if let Some(cache) = cache {
        out.extend(newest_venv(&cache));
    }
    out
}

/// The directory of the program as it was typed: the path's parent when it has one, else the
/// `PATH` entry that holds it. Symlinks are not resolved: the link's directory is what counts.
fn invoked_dir(argv0: &Path) -> Option<PathBuf> {
    if argv0.components().count() > 1 {
        return argv0.parent().map(Path::to_path_buf);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join(argv0).is_file())
}

/// The most recently completed venv of the setup's cache (`venv-<hash>/.complete`).
fn newest_venv(cache: &Path) -> Option<PathBuf> {
    std::fs::read_dir(cache)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("venv-"))
        .filter_map(|e| {
            let done = std::fs::metadata(e.path().join(".complete")).ok()?;
            Some((done.modified().ok()?, e.path().join("bin/python")))
        })
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p)
}

fn has_awslambdaric(python: &Path) -> bool {
    std::process::Command::new(python)
        .args(["-c", "import awslambdaric"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_in_order() {
        let c = candidates(
            Some("/venv".into()),
            Some("/repo/.venv/bin/lambdamesh".into()),
            Some("/repo/sub".into()),
            Some("/cache/target/debug/lambdamesh".into()),
            None,
        );
        let c: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            c,
            [
                "/venv/bin/python",
                "/repo/.venv/bin/python",
                "/repo/sub/.venv/bin/python",
                "/repo/.venv/bin/python",
                "/.venv/bin/python",
                "/cache/target/debug/.venv/bin/python",
                "/cache/target/.venv/bin/python",
                "/cache/.venv/bin/python",
                "/.venv/bin/python",
            ]
        );
    }

    #[test]
    fn the_newest_complete_venv_of_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["venv-a", "venv-b", "venv-incomplete", "other"] {
            std::fs::create_dir_all(dir.path().join(name).join("bin")).unwrap();
        }
        std::fs::write(dir.path().join("venv-a/.complete"), "").unwrap();
        std::fs::write(dir.path().join("venv-b/.complete"), "").unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("venv-a/.complete"))
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(
            newest_venv(dir.path()),
            Some(dir.path().join("venv-a/bin/python"))
        );
    }
}
