//! Third-party servers the tests start on 127.0.0.1 (moto's S3, the GCS emulator, Debian's
//! docker-registry): a process on a free port, waited for until it listens, killed when
//! dropped. A missing program fails the test saying what to install.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to listen (moto imports a lot of Python).
const LISTEN_WITHIN: Duration = Duration::from_secs(60);

/// A running server process.
#[derive(Debug)]
pub struct Service {
    name: String,
    pub port: u16,
    child: Child,
    log: std::path::PathBuf,
}

impl Service {
    /// Runs `command` (already given its port) with stdout and stderr in `log`, and waits
    /// until `port` takes connections. `install` says how to get the program.
    pub fn start(
        name: &str,
        mut command: Command,
        port: u16,
        log: &Path,
        install: &str,
    ) -> Service {
        let out = std::fs::File::create(log).expect("service log");
        let err = out.try_clone().expect("service log");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} failed ({e}); install it: {install}"));
        let mut service = Service {
            name: name.to_owned(),
            port,
            child,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + LISTEN_WITHIN;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!(
                    "{name} exited ({status}); install it: {install}\n{}",
                    service.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {port}:\n{}",
                service.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
