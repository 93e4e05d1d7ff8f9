//! A benchmark driver stopped by SIGINT, SIGTERM or SIGHUP kills its children and removes its
//! scratch dirs ([`bench::clean_up_on_signal`]): this test runs itself as such a driver (the
//! `driver_stand_in` test, which does nothing unless told to), signals it, and checks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STAND_IN: &str = "BENCH_SIGNAL_CLEANUP_STAND_IN";

/// As a driver would: watch signals, make a scratch dir, start a long-lived child, say what it
/// made, then wait (bounded) to be stopped.
#[test]
fn driver_stand_in() {
    if std::env::var_os(STAND_IN).is_none() {
        return;
    }
    bench::clean_up_on_signal().unwrap();
    let dir = bench::scratch_dir("bench-signal-test-").unwrap();
    std::fs::write(dir.path().join("data"), "x").unwrap();
    let child = bench::Child::spawn(Command::new("sleep").arg("120")).unwrap();
    println!("STAND-IN {} {}", child.id(), dir.path().display());
    std::thread::sleep(Duration::from_secs(60));
    panic!("the stand-in was not stopped by a signal within 60 s");
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; it only waits for its (new) parent to reap it.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

#[test]
fn children_and_scratch_dirs_are_gone_after_a_signal() {
    for signal in ["TERM", "INT", "HUP"] {
        let mut driver = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "driver_stand_in",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(STAND_IN, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
        // libtest may have written "test driver_stand_in ... " on the same line.
        let line = lines
            .find_map(|l| {
                l.ok()
                    .and_then(|l| l.split_once("STAND-IN ").map(|(_, r)| r.to_owned()))
            })
            .expect("the stand-in never said what it started");
        let mut parts = line.split_whitespace();
        let child: u32 = parts.next().unwrap().parse().unwrap();
        let dir = std::path::PathBuf::from(parts.next().unwrap());
        assert!(alive(child) && dir.join("data").exists(), "{line}");

        let sent = Command::new("kill")
            .args([format!("-{signal}"), driver.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = driver.wait().unwrap();
        assert_eq!(status.code(), Some(130), "SIG{signal}: {status}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(child) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !alive(child),
            "SIG{signal}: child {child} outlived the driver"
        );
        assert!(
            !dir.exists(),
            "SIG{signal}: {} was left behind",
            dir.display()
        );
    }
}
