//! Progress of `up`: on a terminal, one line per part rewritten in place (waiting, starting,
//! ready in N ms, failed); otherwise one plain line per change, for logs and scripts.

use std::io::{IsTerminal, Write};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Waiting,
    Starting,
    Ready { ms: u128, note: String },
    Failed,
    Stopping,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Waiting => write!(f, "waiting"),
            Status::Starting => write!(f, "starting"),
            Status::Ready { ms, note } if note.is_empty() => write!(f, "ready in {ms} ms"),
            Status::Ready { ms, note } => write!(f, "ready in {ms} ms ({note})"),
            Status::Failed => write!(f, "failed"),
            Status::Stopping => write!(f, "stopping"),
            Status::Stopped => write!(f, "stopped"),
        }
    }
}

pub struct Progress {
    tty: bool,
    parts: Vec<(String, Status)>,
    /// Lines of the table printed so far (TTY mode rewrites them).
    drawn: usize,
}

impl Progress {
    pub fn new(names: Vec<String>) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let mut p = Progress {
            tty,
            parts: names.into_iter().map(|n| (n, Status::Waiting)).collect(),
            drawn: 0,
        };
        if tty {
            p.draw();
        }
        p
    }

    pub fn set(&mut self, name: &str, status: Status) {
        if let Some(entry) = self.parts.iter_mut().find(|(n, _)| n == name) {
            if entry.1 == status {
                return;
            }
            entry.1 = status.clone();
        }
        if self.tty {
            self.draw();
        } else {
            let _ = writeln!(std::io::stderr(), "up: {name}: {status}");
        }
    }

    /// A free-form line (errors, notes) below the table.
    pub fn line(&mut self, text: &str) {
        let _ = writeln!(std::io::stderr(), "{text}");
        // The table is no longer the last thing on screen: start a new one below.
        self.drawn = 0;
    }

    fn draw(&mut self) {
        let mut err = std::io::stderr().lock();
        if self.drawn > 0 {
            let _ = write!(err, "\x1b[{}A", self.drawn);
        }
        let width = self.parts.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, status) in &self.parts {
            let colour = match status {
                Status::Ready { .. } => "\x1b[32m",
                Status::Failed => "\x1b[31m",
                Status::Starting | Status::Stopping => "\x1b[33m",
                _ => "\x1b[2m",
            };
            let _ = writeln!(err, "\x1b[2K  {name:width$}  {colour}{status}\x1b[0m");
        }
        self.drawn = self.parts.len();
    }
}
