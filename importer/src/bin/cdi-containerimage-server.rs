//! `cdi-containerimage-server`: serves the disk file of a containerDisk to the importer in the
//! same pod, for `pullMethod: node` (the kubelet pulls the image and runs it as a container;
//! this program runs inside it, copied there by an init container).
//!
//! ```text
//!  cdi-containerimage-server --install /shared/server          (init container, importer image)
//!  /shared/server -p 8100 -image-dir /disk -ready-file /shared/ready -done-file /shared/done
//! ```
//!
//! It finds the one regular file in the image directory, writes its name to the ready file,
//! serves `GET`/`HEAD /<name>` (with `Range`) on 127.0.0.1, and exits 0 once the done file
//! appears. It uses the standard library only and is linked statically, so it runs in any
//! image (containerDisks are `FROM scratch`).
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Longest request head read (a GET with a Range header is a few hundred bytes).
const MAX_HEAD: usize = 16 << 10;
/// How often the done file is looked for.
const DONE_POLL: Duration = Duration::from_millis(200);

#[derive(Debug)]
struct Options {
    port: u16,
    image_dir: PathBuf,
    ready_file: PathBuf,
    done_file: PathBuf,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, destination] = args.as_slice()
        && flag == "--install"
    {
        return match install(Path::new(destination)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cdi-containerimage-server: installing into {destination}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cdi-containerimage-server: {e}");
            eprintln!(
                "usage: cdi-containerimage-server -p PORT -image-dir DIR -ready-file FILE -done-file FILE\n       cdi-containerimage-server --install DESTINATION"
            );
            return ExitCode::from(2);
        }
    };
    match serve(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cdi-containerimage-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Copies this program to `destination` (the volume shared with the image's container).
fn install(destination: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let me = std::env::current_exe()?;
    let partial = destination.with_extension("partial");
    std::fs::copy(&me, &partial)?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&partial, destination)
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut port = None;
    let mut image_dir = None;
    let mut ready_file = None;
    let mut done_file = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .clone();
        match flag.trim_start_matches('-') {
            "p" | "port" => {
                port = Some(
                    value
                        .parse::<u16>()
                        .map_err(|_| format!("-p {value:?} is not a port"))?,
                )
            }
            "image-dir" => image_dir = Some(PathBuf::from(value)),
            "ready-file" => ready_file = Some(PathBuf::from(value)),
            "done-file" => done_file = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag -{other}")),
        }
    }
    Ok(Options {
        port: port.ok_or("-p is required")?,
        image_dir: image_dir.ok_or("-image-dir is required")?,
        ready_file: ready_file.ok_or("-ready-file is required")?,
        done_file: done_file.ok_or("-done-file is required")?,
    })
}

/// The one regular file in `dir` (following links), or why there is not exactly one.
fn disk_file(dir: &Path) -> Result<String, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("reading the image directory {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push(name);
        }
    }
    files.sort();
    match files.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "no disk image file in {}: a container disk holds its image as /disk/<file>",
            dir.display()
        )),
        several => Err(format!(
            "{} holds several files ({}); a container disk holds exactly one",
            dir.display(),
            several.join(", ")
        )),
    }
}

fn serve(options: &Options) -> Result<(), String> {
    let name = disk_file(&options.image_dir)?;
    let path = options.image_dir.join(&name);
    let listener = TcpListener::bind(("127.0.0.1", options.port))
        .map_err(|e| format!("listening on 127.0.0.1:{}: {e}", options.port))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    // Ready only once it listens: the importer connects as soon as it reads the name.
    std::fs::write(&options.ready_file, &name)
        .map_err(|e| format!("writing {}: {e}", options.ready_file.display()))?;
    eprintln!(
        "cdi-containerimage-server: serving {} on 127.0.0.1:{}",
        path.display(),
        options.port
    );
    loop {
        if options.done_file.exists() {
            eprintln!("cdi-containerimage-server: the importer is done; exiting");
            return Ok(());
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let path = path.clone();
                let name = name.clone();
                std::thread::spawn(move || {
                    if let Err(e) = answer(stream, &name, &path) {
                        eprintln!("cdi-containerimage-server: {e}");
                    }
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(DONE_POLL),
            Err(e) => return Err(format!("accepting: {e}")),
        }
    }
}

/// Answers one request on `stream`: the file (or its range), or an error status.
fn answer(stream: TcpStream, name: &str, path: &Path) -> Result<(), String> {
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("connection: {e}"))?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        head.push(line.trim_end().to_owned());
        if head.iter().map(String::len).sum::<usize>() > MAX_HEAD {
            return respond(&stream, "431 Request Header Fields Too Large", &[], b"");
        }
    }
    let request = head.first().cloned().unwrap_or_default();
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return respond(
            &stream,
            "405 Method Not Allowed",
            &[("Allow", "GET, HEAD")],
            b"",
        );
    }
    if target.trim_start_matches('/') != name {
        return respond(&stream, "404 Not Found", &[], b"");
    }
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let range = head.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("range")
            .then(|| v.trim().to_owned())
    });
    let start = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => match spec.strip_suffix('-').and_then(|s| s.parse::<u64>().ok()) {
            Some(start) if start <= len => Some(start),
            _ => return respond(&stream, "416 Range Not Satisfiable", &[], b""),
        },
        None => None,
    };
    let from = start.unwrap_or(0);
    let length = (len - from).to_string();
    let content_range = format!("bytes {from}-{}/{len}", len.saturating_sub(1));
    let mut headers = vec![
        ("Content-Length", length.as_str()),
        ("Accept-Ranges", "bytes"),
        ("Content-Type", "application/octet-stream"),
    ];
    let status = if start.is_some() {
        headers.push(("Content-Range", content_range.as_str()));
        "206 Partial Content"
    } else {
        "200 OK"
    };
    respond(&stream, status, &headers, b"")?;
    if method == "HEAD" {
        return Ok(());
    }
    file.seek(SeekFrom::Start(from))
        .map_err(|e| e.to_string())?;
    let mut out = &stream;
    std::io::copy(&mut file.take(len - from), &mut out)
        .map(|_| ())
        .map_err(|e| format!("sending {}: {e}", path.display()))
}

fn respond(
    mut stream: &TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), String> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| *k == "Content-Length") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("answering: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_upstreams_and_all_required() {
        let args: Vec<String> = [
            "-p",
            "8100",
            "-image-dir",
            "/disk",
            "-ready-file",
            "/shared/ready",
            "-done-file",
            "/shared/done",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = parse(&args).expect("valid");
        assert_eq!(o.port, 8100);
        assert_eq!(o.image_dir, PathBuf::from("/disk"));
        assert!(parse(&args[..6]).is_err(), "-done-file missing");
        assert!(parse(&["-p".into(), "x".into()]).is_err());
    }

    #[test]
    fn exactly_one_file_is_the_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            disk_file(dir.path())
                .expect_err("empty")
                .contains("no disk image file")
        );
        std::fs::write(dir.path().join("fedora.qcow2"), b"x").expect("file");
        std::fs::create_dir(dir.path().join("sub")).expect("dir");
        assert_eq!(disk_file(dir.path()).expect("one"), "fedora.qcow2");
        std::fs::write(dir.path().join("b.img"), b"y").expect("file");
        assert!(
            disk_file(dir.path())
                .expect_err("two")
                .contains("b.img, fedora.qcow2")
        );
    }
}
