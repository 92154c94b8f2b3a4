//! `log_probe`: a test fixture action that exercises every output channel once.
//!
//! It logs one line at each level (trace, debug, info, warn, error; message
//! `log_probe <level>`) with the field `k=v`, writes `stdout-line\n` to stdout and
//! `stderr-line\n` to stderr (write errors ignored), and returns `{"ok": true}`.

use std::io::Write;

use serde::Serialize;
use serde::de::IgnoredAny;
use stormhook_sdk::log::{self, Level};
use stormhook_sdk::{Action, Context, Error};

/// The action's result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// Always `true`.
    pub ok: bool,
}

/// The action.
pub struct LogProbe;

impl Action for LogProbe {
    type Params = IgnoredAny;
    type Output = Output;

    fn run(_params: IgnoredAny, _ctx: &Context) -> Result<Output, Error> {
        for (level, name) in [
            (Level::Trace, "trace"),
            (Level::Debug, "debug"),
            (Level::Info, "info"),
            (Level::Warn, "warn"),
            (Level::Error, "error"),
        ] {
            log::log(level, format!("log_probe {name}"), &[("k", "v")]);
        }

        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(b"stdout-line\n");
        let _ = stdout.flush();
        let _ = std::io::stderr().write_all(b"stderr-line\n");

        Ok(Output { ok: true })
    }
}

stormhook_sdk::export_action!(LogProbe);
