//! A real PostgreSQL server for one test, from Debian's `postgresql` package (which
//! `scripts/test` installs): a fresh cluster in a temporary folder, run as the package's
//! `postgres` user, on 127.0.0.1 and any other addresses asked for, removed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

pub struct Postgres {
    pub port: u16,
    server: Child,
    _folder: tempfile::TempDir,
}

/// The newest installed server's programs (`/usr/lib/postgresql/<version>/bin`).
fn programs() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: apt-get install postgresql (scripts/test does)")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no PostgreSQL server programs found")
}

/// Runs `program` as the `postgres` user.
fn as_postgres(program: PathBuf) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid",
            "postgres",
            "--regid",
            "postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
    command
}

impl Postgres {
    /// Starts a server that listens on 127.0.0.1 and `also_on` (a Docker network's gateway,
    /// for containers) and trusts every connection: a test's throwaway cluster.
    pub fn start(also_on: &[&str]) -> Self {
        let addresses = std::iter::once("127.0.0.1")
            .chain(also_on.iter().copied())
            .collect::<Vec<_>>()
            .join(",");
        let bin = programs();
        let folder = tempfile::tempdir().unwrap();
        let cluster = folder.path().join("cluster");
        let output = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(folder.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let output = as_postgres(bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "-D",
            ])
            .arg(&cluster)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(
            cluster.join("pg_hba.conf"),
            "local all all trust\nhost all all 0.0.0.0/0 trust\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = as_postgres(bin.join("postgres"))
            .arg("-D")
            .arg(&cluster)
            .args(["-p", &port.to_string(), "-c"])
            .arg(format!("listen_addresses={addresses}"))
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                folder.path().display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let postgres = Self {
            port,
            server,
            _folder: folder,
        };
        for _ in 0..120 {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .output()
                .unwrap();
            if ready.status.success() {
                return postgres;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("PostgreSQL on {addresses} port {port} never became ready");
    }

    /// Runs one SQL statement with psql and returns its unaligned, tuples-only output.
    pub fn query(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-XAtc", sql])
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
