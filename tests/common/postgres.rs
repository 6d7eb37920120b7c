//! A PostgreSQL server of a test's own (initdb and pg_ctl from /usr/lib/postgresql/*/bin), on a
//! free port, trust authentication, stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct OwnPostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

/// The newest PostgreSQL's programs on this machine.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    versions.pop()
}

/// Runs a PostgreSQL program as the `postgres` user when this is root (initdb refuses root).
fn as_owner(program: &Path) -> Command {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl OwnPostgres {
    /// `None` (the test says it skipped; CI fails) where PostgreSQL's programs are missing.
    pub fn start(dir: &Path) -> Option<OwnPostgres> {
        let bin = bin_dir();
        if !super::found_or_skipped(bin.is_some(), "PostgreSQL's initdb is not installed") {
            return None;
        }
        let bin = bin?;
        let port = super::free_port();
        std::fs::create_dir_all(dir).expect("postgres dir");
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir)
            .status();
        let data = dir.join("data");
        let initialized = as_owner(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(
            initialized.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initialized.stderr)
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            dir.display()
        );
        let started = as_owner(&bin.join("pg_ctl"))
            .args(["-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.join("log"))
            .args(["-w", "start"])
            .output()
            .expect("pg_ctl");
        assert!(
            started.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let own = OwnPostgres {
            port,
            dir: dir.to_path_buf(),
            bin,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while own.sql("SELECT 1") != "1" {
            assert!(Instant::now() < deadline, "PostgreSQL did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(own)
    }

    /// Runs one statement in database `postgres`; its output, trimmed ("" on an error).
    pub fn sql(&self, statement: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-qtA", "-c", statement])
            .output();
        output
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_owner(&self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
