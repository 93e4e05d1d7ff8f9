//! Logs to stderr, which Lambda sends to the function's log stream with everything else the
//! sandbox writes: one line per event, plain text (no colours), the level from `LOG_LEVEL`.

use tracing::level_filters::LevelFilter;

/// Installs the subscriber (once; a second call is ignored).
pub fn init(level: LevelFilter) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}
