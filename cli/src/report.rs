//! Runs an import with a progress display and prints the one-line summary or the error.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use cdi_datapath::sink::open_target;
use cdi_datapath::{Error, ImportReport, Progress, ProgressSnapshot, import, verify};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{ImportRequest, ProgressArg};
use crate::exit;

pub fn run_import(req: ImportRequest) -> ExitCode {
    let source = match req.source.clone().open() {
        Ok(s) => s,
        Err(e) => return fail(&e, "nothing was written"),
    };
    let sink = match open_target(&req.dest, req.target.clone()) {
        Ok(s) => s,
        Err(e) => return fail(&e, "nothing was written"),
    };
    let progress = Progress::new();
    let mode = match req.progress {
        ProgressArg::Auto if std::io::stderr().is_terminal() => ProgressArg::Bar,
        ProgressArg::Auto => ProgressArg::Lines,
        other => other,
    };
    let display = Display::spawn(mode, Arc::clone(&progress));
    let result = import(source, sink, &req.spec, &progress);
    if let Some(d) = display {
        d.finish();
    }
    match result {
        Ok(report) => {
            println!("{}", summary(&req, &report));
            if req.image_sha256 {
                match verify::image_sha256(&req.dest, report.sink.final_size) {
                    Ok(digest) => println!("image sha256:{digest}"),
                    Err(e) => {
                        return fail(&e, "the image was written; only its verification failed");
                    }
                }
            }
            ExitCode::from(exit::OK)
        }
        Err(failure) => fail(&failure.error, &failure.target_state),
    }
}

fn fail(e: &Error, target_state: &str) -> ExitCode {
    let kind = e.kind();
    eprintln!("cdictl: import failed: {e}");
    eprintln!("cdictl: target: {target_state}");
    eprintln!("cdictl: what to do: {}", exit::advice(kind));
    ExitCode::from(exit::for_kind(kind))
}

fn summary(req: &ImportRequest, r: &ImportReport) -> String {
    let secs = r.elapsed.as_secs_f64().max(1e-6);
    let mut line = format!(
        "imported {} ({}) into {}: {} in, {} image, {} written, {} holes, {:.2} s, {:.1} MB/s",
        req.shown,
        r.format_chain(),
        req.dest.display(),
        bytes(r.source_bytes),
        bytes(r.sink.final_size),
        bytes(r.written),
        bytes(r.holes),
        secs,
        r.decode.image_size as f64 / secs / 1e6,
    );
    if let Some(c) = &r.checksum {
        line.push_str(&format!(", {} verified", c.algorithm.name()));
    }
    for vouched in &r.verified {
        line.push_str(&format!(
            ", {} verified against {}",
            vouched.checksum.algorithm.name(),
            vouched.origin
        ));
    }
    if r.sink.preallocated {
        line.push_str(", preallocated");
    }
    line
}

pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// How often the progress bar refreshes.
const TICK: Duration = Duration::from_millis(100);
/// How often plain progress lines are printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// The progress display's thread. It stops as soon as the import ends, not at its next tick:
/// a sleeping display once added up to 100 ms to every import.
struct Display {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Display {
    fn spawn(mode: ProgressArg, progress: Arc<Progress>) -> Option<Display> {
        let (stop, stopped) = mpsc::channel();
        let thread = match mode {
            ProgressArg::None | ProgressArg::Auto => return None,
            ProgressArg::Bar => std::thread::spawn(move || bar(&progress, &stopped)),
            ProgressArg::Lines => {
                std::thread::spawn(move || lines(&progress, &stopped, LINE_EVERY))
            }
        };
        Some(Display { stop, thread })
    }

    fn finish(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// Waits one tick; false once the display is told to stop.
fn next_tick(stopped: &mpsc::Receiver<()>, tick: Duration) -> bool {
    matches!(
        stopped.recv_timeout(tick),
        Err(mpsc::RecvTimeoutError::Timeout)
    )
}

fn bar(progress: &Progress, stopped: &mpsc::Receiver<()>) {
    let pb = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} read, {msg} ({binary_bytes_per_sec})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    loop {
        let s = progress.snapshot();
        if let Some(t) = s.source_total {
            pb.set_length(t);
        }
        pb.set_position(s.source_read);
        pb.set_message(format!(
            "{} written, {} holes",
            bytes(s.written),
            bytes(s.holes)
        ));
        if !next_tick(stopped, TICK) {
            break;
        }
    }
    pb.finish_and_clear();
}

fn lines(progress: &Progress, stopped: &mpsc::Receiver<()>, every: Duration) {
    while next_tick(stopped, every) {
        eprintln!("cdictl: {}", line(&progress.snapshot()));
    }
}

fn line(s: &ProgressSnapshot) -> String {
    let pct = s
        .percent()
        .map(|p| format!(" ({p:.1}%)"))
        .unwrap_or_default();
    format!(
        "read {}{pct}, written {}, holes {}",
        bytes(s.source_read),
        bytes(s.written),
        bytes(s.holes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The display must stop when told, not at its next tick: a display that slept out its
    /// tick after the import ended made every import up to one tick slower.
    #[test]
    fn display_stops_when_told_not_at_its_next_tick() {
        let progress = Progress::new();
        let (stop, stopped) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            lines(&progress, &stopped, Duration::from_secs(3600));
            let _ = done_tx.send(());
        });
        drop(stop);
        assert!(
            done.recv_timeout(Duration::from_secs(30)).is_ok(),
            "the display was still waiting out its one-hour interval"
        );
    }
}
