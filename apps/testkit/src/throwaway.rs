//! Throwaway PostgreSQL and Redis servers for fault tests: each on a free port with its own data
//! directory, so a test can stop and restart them without touching the shared services.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn pg_bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("SHIFTCOVER_PG_BIN") {
        return Path::new(&dir).join(name);
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        versions.sort();
        if let Some(latest) = versions.last() {
            return latest.join("bin").join(name);
        }
    }
    PathBuf::from(name)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (PostgreSQL refuses root).
fn pg_command(name: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(name));
        c
    } else {
        Command::new(pg_bin(name))
    }
}

/// A PostgreSQL server of a test's own.
pub struct ThrowawayPostgres {
    dir: PathBuf,
    /// The port it listens on.
    pub port: u16,
}

impl ThrowawayPostgres {
    /// Creates a cluster and starts it.
    pub fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("sc-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()?;
            anyhow::ensure!(status.success(), "chown of the data directory failed");
        }
        let status = pg_command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "initdb failed");
        let pg = Self {
            dir,
            port: free_port()?,
        };
        pg.start_server()?;
        Ok(pg)
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the server (after [`stop`](Self::stop)) and waits until it accepts connections.
    pub fn start_server(&self) -> anyhow::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let status = pg_command("pg_ctl")
            .args(["-w", "-t", "30", "-D"])
            .arg(self.dir.join("data"))
            .args(["-o", &opts, "-l"])
            .arg(self.dir.join("log"))
            .arg("start")
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "pg_ctl start failed");
        Ok(())
    }

    /// Stops the server at once (connections are cut, as in a crash).
    pub fn stop(&self) -> anyhow::Result<()> {
        let status = pg_command("pg_ctl")
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "pg_ctl stop failed");
        Ok(())
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis server of a test's own, keeping nothing on disk.
pub struct ThrowawayRedis {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
}

impl ThrowawayRedis {
    /// Starts a server on a free port.
    pub fn start() -> anyhow::Result<Self> {
        let mut r = Self {
            child: None,
            port: free_port()?,
        };
        r.start_server()?;
        Ok(r)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts (or restarts) the server and waits until it answers.
    pub fn start_server(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("redis-server did not start")
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
