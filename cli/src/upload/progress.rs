//! The upload's progress: bytes the server confirmed plus those of the request in flight,
//! shown as a bar on a terminal, as a line every few seconds otherwise, or not at all. Notes
//! (a resume, a retry) go through the display so they do not tear the bar.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::args::ProgressArg;
use crate::report::bytes;

/// Counters the uploader writes and the display reads.
pub use cdi_tusclient::Meter;

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(100);
/// How often a progress line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// The display, running on its own thread until [`Display::finish`].
#[derive(Debug)]
pub struct Display {
    meter: Arc<Meter>,
    bar: Option<ProgressBar>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Display {
    pub fn start(mode: ProgressArg, meter: Arc<Meter>) -> Display {
        use std::io::IsTerminal;
        let mode = match mode {
            ProgressArg::Auto if std::io::stderr().is_terminal() => ProgressArg::Bar,
            ProgressArg::Auto => ProgressArg::Lines,
            other => other,
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let mut display = Display {
            meter: Arc::clone(&meter),
            bar: None,
            stop: Some(stop),
            thread: None,
        };
        match mode {
            ProgressArg::Bar => {
                let pb = ProgressBar::new(meter.total.load(Ordering::Relaxed));
                let style = ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} sent ({binary_bytes_per_sec}, ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                pb.set_style(style);
                let bar = pb.clone();
                display.bar = Some(pb);
                display.thread = Some(std::thread::spawn(move || {
                    loop {
                        bar.set_length(meter.total.load(Ordering::Relaxed));
                        bar.set_position(meter.position());
                        if !matches!(
                            stopped.recv_timeout(TICK),
                            Err(mpsc::RecvTimeoutError::Timeout)
                        ) {
                            break;
                        }
                    }
                }));
            }
            ProgressArg::Lines => {
                display.thread = Some(std::thread::spawn(move || {
                    let start = Instant::now();
                    let first = meter.position();
                    while matches!(
                        stopped.recv_timeout(LINE_EVERY),
                        Err(mpsc::RecvTimeoutError::Timeout)
                    ) {
                        let now = meter.position();
                        let total = meter.total.load(Ordering::Relaxed);
                        eprintln!(
                            "cdictl: {}",
                            line(now, total, now.saturating_sub(first), start.elapsed())
                        );
                    }
                }));
            }
            ProgressArg::None | ProgressArg::Auto => {}
        }
        display
    }

    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// Prints a note on its own line.
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(pb) => pb.println(format!("cdictl: {text}")),
            None => eprintln!("cdictl: {text}"),
        }
    }

    /// Stops the display and clears the bar.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
}

/// `sent 12.0 MiB of 64.0 MiB (18.8%), 10.5 MB/s, 5 s left`: `moved` bytes in `elapsed` give
/// the rate.
fn line(position: u64, total: u64, moved: u64, elapsed: Duration) -> String {
    let pct = if total > 0 {
        position as f64 * 100.0 / total as f64
    } else {
        100.0
    };
    let rate = moved as f64 / elapsed.as_secs_f64().max(1e-3);
    let left = if rate > 0.0 {
        format!(
            ", {:.0} s left",
            total.saturating_sub(position) as f64 / rate
        )
    } else {
        String::new()
    };
    format!(
        "sent {} of {} ({pct:.1}%), {:.1} MB/s{left}",
        bytes(position),
        bytes(total),
        rate / 1e6
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_has_percent_rate_and_time_left() {
        assert_eq!(
            line(16 << 20, 64 << 20, 10_000_000, Duration::from_secs(1)),
            "sent 16.0 MiB of 64.0 MiB (25.0%), 10.0 MB/s, 5 s left"
        );
        assert_eq!(
            line(0, 100, 0, Duration::from_secs(1)),
            "sent 0 B of 100 B (0.0%), 0.0 MB/s"
        );
    }
}
