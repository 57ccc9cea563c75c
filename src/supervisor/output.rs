//! A worker's stdout and stderr, forwarded to the front's log one event per line, tagged
//! with pool, pid and stream.
//!
//! roost's own worker logs `LEVEL target: message fields` (no timestamp under the
//! supervisor): that line is re-logged at its own level without the level and target,
//! so the front's log does not read `INFO  INFO roost::worker::…`. Its one stdout line,
//! `listening on ADDR`, repeats the `worker listening` event and goes to debug. Any
//! other line (a custom app's output) is logged at info as it is.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tracing::Level;

/// Longest piece of output logged as one line; longer lines are split.
pub(crate) const MAX_LINE: u64 = 16 * 1024;

/// The level a line is logged at, and what is left of it once the worker's own level
/// and target are taken off.
pub(crate) fn classify<'a>(line: &'a str, stream: &str) -> (Level, &'a str) {
    if stream == "stdout" && line.starts_with("listening on ") {
        return (Level::DEBUG, line);
    }
    let trimmed = line.trim_start();
    let Some((word, rest)) = trimmed.split_once(' ') else {
        return (Level::INFO, line);
    };
    let level = match word {
        "TRACE" => Level::TRACE,
        "DEBUG" => Level::DEBUG,
        "INFO" => Level::INFO,
        "WARN" => Level::WARN,
        "ERROR" => Level::ERROR,
        _ => return (Level::INFO, line),
    };
    let rest = rest.trim_start();
    // `roost::worker::server: message` → `message`.
    let rest = match rest.split_once(": ") {
        Some((target, msg)) if target.contains("::") && !target.contains(' ') => msg,
        _ => rest,
    };
    (level, rest)
}

fn emit(line: &str, pool: &str, pid: u32, stream: &'static str) {
    let (level, text) = classify(line, stream);
    macro_rules! at {
        ($lvl:expr) => {
            tracing::event!(target: "roost::worker_output", $lvl, pool = %pool, pid, stream, "{text}")
        };
    }
    match level {
        Level::ERROR => at!(Level::ERROR),
        Level::WARN => at!(Level::WARN),
        Level::INFO => at!(Level::INFO),
        Level::DEBUG => at!(Level::DEBUG),
        _ => at!(Level::TRACE),
    }
}

/// Forward a child's output to the log, one event per line. It reads to the end whatever
/// comes (long lines split, bytes that are not UTF-8 replaced): a child whose pipe is no
/// longer drained would block on its next write.
pub(crate) async fn log_lines(
    stream: impl AsyncRead + Unpin,
    pool: String,
    pid: u32,
    which: &'static str,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                emit(text.trim_end_matches(['\n', '\r']), &pool, pid, which);
            }
            Err(e) => {
                tracing::debug!(pool = %pool, pid, stream = which, error = %e, "worker output closed");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn output_is_drained_whatever_it_contains() {
        // Invalid UTF-8 and a line far longer than MAX_LINE, then more output: all of it
        // must be read, or the writer would block.
        let mut data = b"ok\n\xff\xfe bad utf8\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', (MAX_LINE * 3) as usize));
        data.extend(b"\nlast\n");
        let (mut w, r) = tokio::io::duplex(1024);
        let reader = tokio::spawn(log_lines(r, "p".into(), 1, "stdout"));
        tokio::io::AsyncWriteExt::write_all(&mut w, &data)
            .await
            .unwrap();
        drop(w);
        tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("reader finished")
            .unwrap();
    }

    #[test]
    fn the_workers_level_and_target_are_taken_off() {
        let line = " INFO roost::worker::server: worker listening app=demo listen=unix:/x.sock";
        assert_eq!(
            classify(line, "stderr"),
            (Level::INFO, "worker listening app=demo listen=unix:/x.sock")
        );
        assert_eq!(
            classify("WARN roost::worker::gate: queue full", "stderr"),
            (Level::WARN, "queue full")
        );
        assert_eq!(
            classify("ERROR something broke: disk full", "stderr"),
            (Level::ERROR, "something broke: disk full")
        );
    }

    #[test]
    fn other_output_is_kept_as_it_is() {
        for line in [
            "hello world",
            "INFORMATION: x",
            "",
            "Listening on 0.0.0.0:80",
        ] {
            assert_eq!(classify(line, "stderr"), (Level::INFO, line));
        }
        assert_eq!(
            classify("listening on unix:/x.sock", "stdout"),
            (Level::DEBUG, "listening on unix:/x.sock")
        );
    }
}
