//! Scratch PostgreSQL databases: each test gets a database of its own on the server the
//! tests use, created empty and dropped when the test ends.

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
