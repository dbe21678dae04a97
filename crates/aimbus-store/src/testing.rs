//! Scratch PostgreSQL databases: each test gets a database of its own on the server the
//! tests use, created empty and dropped when the test ends.

use std::process::Command;

use sqlx::{Connection, Executor, PgConnection};

/// The server's maintenance database; `AIMBUS_TEST_POSTGRES_URL` overrides it.
pub fn admin_url() -> String {
    std::env::var("AIMBUS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, empty database; dropped (with any connection still open to it) on drop.
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    pub async fn create() -> Result<ScratchDatabase, sqlx::Error> {
        Self::create_on(&admin_url()).await
    }

    /// On the server of `admin_url` (a PostgreSQL a test runs on a port of its own).
    pub async fn create_on(admin_url: &str) -> Result<ScratchDatabase, sqlx::Error> {
        let name = format!("aimbus_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(admin_url).await?;
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
        admin.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        Ok(ScratchDatabase {
            url: format!("{base}/{name}"),
            admin_url: admin_url.to_owned(),
            name,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        // Drop runs outside any runtime that could be borrowed: a thread of its own.
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                admin.execute(statement.as_str()).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("scratch database {} was not dropped", self.name);
        }
    }
}

/// A PostgreSQL server of a test's own, on a port of its own, that the test may stop and
/// start again without disturbing the server every other test uses. Removed on drop.
pub struct PrivatePostgres {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// `initdb` and `pg_ctl start` from the machine's PostgreSQL, run as the `postgres`
    /// user when the test runs as root (the server refuses to run as root).
    pub fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries under /usr/lib/postgresql")
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .find(|bin| bin.join("initdb").exists())
            .expect("initdb under /usr/lib/postgresql/<version>/bin");
        let data =
            std::env::temp_dir().join(format!("aimbus-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data).unwrap();
        if is_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(&data));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let server = PrivatePostgres { bin, data, port };
        run(server
            .as_postgres("initdb")
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(server.cluster()));
        server.start_again();
        server
    }

    fn cluster(&self) -> std::path::PathBuf {
        self.data.join("cluster")
    }

    /// One of the server's programs, as the `postgres` user when we are root.
    fn as_postgres(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// The server's maintenance database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once, cutting every connection (`pg_ctl stop -m fast`).
    pub fn stop(&self) {
        run(self
            .as_postgres("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.cluster()));
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.data.display()
        );
        run(self
            .as_postgres("pg_ctl")
            .args(["start", "-w", "-o", &options, "-l"])
            .arg(self.data.join("server.log"))
            .arg("-D")
            .arg(self.cluster()));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.cluster())
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("runs");
    assert!(output.status.success(), "{command:?}: {output:?}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}
