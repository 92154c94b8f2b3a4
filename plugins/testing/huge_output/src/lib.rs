//! `huge_output`: a test fixture action that produces as much output as asked.
//!
//! Parameters `{"log_lines": n, "stdout_bytes": n, "result_bytes": n}` (each defaults to
//! 0): logs `log_lines` info lines of about 100 bytes each, writes `stdout_bytes` bytes to
//! stdout (write errors, such as a closed pipe, are ignored), and returns
//! `{"data": "xxx..."}` with `result_bytes` x's. It exercises the host's output limits.

use std::io::Write;

use serde::{Deserialize, Serialize};
use stormhook_sdk::{Action, Context, Error, log};

/// The action's parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    /// How many log lines to emit through the `log` import.
    pub log_lines: u64,
    /// How many bytes to write to stdout.
    pub stdout_bytes: u64,
    /// How many x's to return.
    pub result_bytes: u64,
}

/// The action's result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// `result_bytes` x's.
    pub data: String,
}

/// The action.
pub struct HugeOutput;

impl Action for HugeOutput {
    type Params = Params;
    type Output = Output;

    fn run(params: Params, _ctx: &Context) -> Result<Output, Error> {
        for line in 0..params.log_lines {
            // Exactly 100 bytes: 17 of prefix, a 20-digit line number, a space, 62 dashes.
            log::info(format!("huge_output line {line:020} {}", "-".repeat(62)));
        }

        let mut stdout = std::io::stdout().lock();
        let chunk = [b'o'; 8192];
        let mut left = usize::try_from(params.stdout_bytes).unwrap_or(usize::MAX);
        while left > 0 {
            let n = left.min(chunk.len());
            if stdout.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n;
        }
        // A component has no process exit to flush buffered stdout.
        let _ = stdout.flush();

        let result_bytes = usize::try_from(params.result_bytes)
            .map_err(|_| Error::invalid_input("result_bytes does not fit in memory"))?;
        Ok(Output {
            data: "x".repeat(result_bytes),
        })
    }
}

stormhook_sdk::export_action!(HugeOutput);
