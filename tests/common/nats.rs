//! NATS servers of a test's own (with JetStream), on free ports.

use super::eventually;
use std::path::PathBuf;

/// Whether tests can start NATS servers of their own (CI must).
pub fn nats_server_installed() -> bool {
    let installed = std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok();
    super::found_or_skipped(installed, "nats-server is not installed")
}

/// A NATS server of the test's own, on a free port, with its JetStream files in `dir`.
pub struct OwnNats {
    child: std::process::Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl OwnNats {
    pub fn start(port: u16, dir: &std::path::Path) -> OwnNats {
        OwnNats::start_with(port, dir, &[])
    }

    /// With more of nats-server's flags (authentication, TLS).
    pub fn start_with(port: u16, dir: &std::path::Path, flags: &[&str]) -> OwnNats {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .args(flags)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        eventually("nats-server answers", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        OwnNats {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    pub fn restart(mut self) -> OwnNats {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (port, dir) = (self.port, self.dir.clone());
        std::mem::forget(self);
        OwnNats::start(port, &dir)
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
