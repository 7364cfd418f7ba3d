//! Runs an import with a progress display and prints the one-line summary or the error.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cdi_datapath::sink::open_target;
use cdi_datapath::source::{FileSource, HttpSource, Source, StdinSource};
use cdi_datapath::{Error, ImportReport, Progress, ProgressSnapshot, import, verify};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{ImportRequest, ProgressArg};
use crate::exit;

pub fn run_import(req: ImportRequest) -> ExitCode {
    let source = match open_source(&req.source) {
        Ok(s) => s,
        Err(e) => return fail(&e, "nothing was written"),
    };
    let sink = match open_target(&req.dest, req.target.clone()) {
        Ok(s) => s,
        Err(e) => return fail(&e, "nothing was written"),
    };
    let progress = Progress::new();
    let done = Arc::new(AtomicBool::new(false));
    let mode = match req.progress {
        ProgressArg::Auto if std::io::stderr().is_terminal() => ProgressArg::Bar,
        ProgressArg::Auto => ProgressArg::Lines,
        other => other,
    };
    let display = spawn_display(mode, Arc::clone(&progress), Arc::clone(&done));
    let result = import(source, sink, &req.spec, &progress);
    done.store(true, Ordering::Relaxed);
    if let Some(d) = display {
        let _ = d.join();
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

fn open_source(spec: &str) -> Result<Box<dyn Source>, Error> {
    if spec == "-" {
        Ok(Box::new(StdinSource::default()))
    } else if spec.starts_with("http://") || spec.starts_with("https://") {
        Ok(Box::new(HttpSource::open(spec)?))
    } else {
        Ok(Box::new(FileSource::open(std::path::Path::new(spec))?))
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
        req.source,
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
    if r.sink.preallocated {
        line.push_str(", preallocated");
    }
    line
}

fn bytes(n: u64) -> String {
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

fn spawn_display(
    mode: ProgressArg,
    progress: Arc<Progress>,
    done: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    match mode {
        ProgressArg::None | ProgressArg::Auto => None,
        ProgressArg::Bar => Some(std::thread::spawn(move || bar(&progress, &done))),
        ProgressArg::Lines => Some(std::thread::spawn(move || lines(&progress, &done))),
    }
}

fn bar(progress: &Progress, done: &AtomicBool) {
    let pb = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} read, {msg} ({binary_bytes_per_sec})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    while !done.load(Ordering::Relaxed) {
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
        std::thread::sleep(Duration::from_millis(100));
    }
    pb.finish_and_clear();
}

fn lines(progress: &Progress, done: &AtomicBool) {
    let mut last = Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            eprintln!("cdictl: {}", line(&progress.snapshot()));
        }
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
