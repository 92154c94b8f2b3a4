//! The stores a suite runs on: SQLite in a temporary directory, and PostgreSQL in a fresh
//! schema of the database named by `STORMHOOK_TEST_DATABASE_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/test`). Without the variable a PostgreSQL test says
//! loudly on stderr that it is skipped and passes; with it set but the database unreachable, it
//! fails.
//!
//! Include it with `#[macro_use] #[path = "common/backends.rs"] mod backends;`; then
//! `on_both_backends!(story, ...)` makes `story::sqlite` and `story::postgres` tests of each
//! `async fn story(backend: &Backend)`.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection as _;
use stormhook_storage::Store;
use stormhook_storage::postgres::{PgOptions, PgStore};
use stormhook_storage::sqlite::{DATASTORE_KEY_FILE, SqliteStore};

/// The environment variable naming the test database.
pub const DATABASE_URL_VAR: &str = "STORMHOOK_TEST_DATABASE_URL";

/// One store under test, and what a test needs to look behind it.
pub struct Backend {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The data directory: the SQLite file and the default datastore key file.
    pub dir: tempfile::TempDir,
    /// Which backend, with its database.
    pub kind: Kind,
}

/// Which backend a [`Backend`] is.
pub enum Kind {
    /// SQLite in `dir/store.db`.
    Sqlite,
    /// PostgreSQL in a schema of its own.
    Postgres(PgSchema),
}

/// `on_both_backends!(a, b)`: for each `async fn a(backend: &Backend)`, a module `a` with the
/// tests `sqlite` and `postgres`.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let backend = crate::backends::sqlite().await;
                super::$name(&backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(backend) = crate::backends::postgres(module_path!()).await else {
                    return;
                };
                super::$name(&backend).await;
            }
        }
    )+};
}

/// A SQLite store in a new temporary directory.
pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db"))
        .await
        .unwrap();
    Backend {
        store: Arc::new(store),
        dir,
        kind: Kind::Sqlite,
    }
}

/// A PostgreSQL store in a fresh schema, or `None` (said loudly) without the test database.
pub async fn postgres(test: &str) -> Option<Backend> {
    let schema = PgSchema::fresh(test).await?;
    let dir = tempfile::tempdir().unwrap();
    let store = schema
        .connect(PgOptions::new(
            "node-1",
            dir.path().join(DATASTORE_KEY_FILE),
        ))
        .await;
    Some(Backend {
        store: Arc::new(store),
        dir,
        kind: Kind::Postgres(schema),
    })
}

impl Backend {
    /// The default datastore key file of this store.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join(DATASTORE_KEY_FILE)
    }

    /// The same database opened again, with the default key file.
    pub async fn reopen(&self) -> Arc<dyn Store> {
        match &self.kind {
            Kind::Sqlite => Arc::new(
                SqliteStore::open(&self.dir.path().join("store.db"))
                    .await
                    .unwrap(),
            ),
            Kind::Postgres(schema) => Arc::new(
                schema
                    .connect(PgOptions::new("node-1-again", self.key_file()))
                    .await,
            ),
        }
    }

    /// The same database opened again, encrypting with the key file `path` (read now).
    pub async fn reopen_with_key(
        &self,
        path: &std::path::Path,
    ) -> stormhook_storage::Result<Arc<dyn Store>> {
        Ok(match &self.kind {
            Kind::Sqlite => Arc::new(
                SqliteStore::open(&self.dir.path().join("store.db"))
                    .await
                    .unwrap()
                    .with_datastore_key(path)?,
            ),
            Kind::Postgres(schema) => Arc::new(
                schema
                    .connect(PgOptions::new("node-1-again", self.key_file()))
                    .await
                    .with_datastore_key(path)?,
            ),
        })
    }

    /// The datastore's rows as stored (name, value, secret), expired ones included.
    pub async fn raw_kv(&self) -> Vec<(String, String, bool)> {
        const QUERY: &str = "SELECT name, value, secret FROM kv ORDER BY name";
        match &self.kind {
            Kind::Sqlite => {
                let conn = rusqlite::Connection::open(self.dir.path().join("store.db")).unwrap();
                let mut statement = conn.prepare(QUERY).unwrap();
                statement
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Kind::Postgres(schema) => sqlx::query_as(QUERY)
                .fetch_all(&mut schema.conn().await)
                .await
                .unwrap(),
        }
    }

    /// Whether this is the shared (PostgreSQL) store.
    pub fn is_shared(&self) -> bool {
        self.store.cluster().is_some()
    }
}

/// The test database's URL, or `None` after saying loudly that the test is skipped.
pub fn test_database_url(test: &str) -> Option<String> {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to the process's stderr: `eprintln!` is captured, and shown only for
            // a failing test.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {DATABASE_URL_VAR} is not set, so this PostgreSQL test did not \
                 run (for example {DATABASE_URL_VAR}=postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A schema of its own in the test database, dropped (with everything in it) when this is
/// dropped, so tests run in parallel on one database.
pub struct PgSchema {
    /// The test database's URL.
    pub base: String,
    /// The schema's name (`st_<random>`).
    pub name: String,
    /// The URL whose connections use the schema (`options=-c search_path=...`).
    pub url: String,
}

impl PgSchema {
    /// A new empty schema, or `None` (said loudly) without the test database. Panics when the
    /// URL is set but the database cannot be reached.
    pub async fn fresh(test: &str) -> Option<Self> {
        let base = test_database_url(test)?;
        let name = format!("st_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR}={base} is unreachable: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        Some(Self { base, name, url })
    }

    /// A store of node `options.node_id` on this schema, with a small pool.
    pub async fn connect(&self, mut options: PgOptions) -> PgStore {
        options.max_connections = 5;
        PgStore::connect(&self.url, options)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url))
    }

    /// A store of node `node_id` with the lease `lease`, sharing `dir`'s key file.
    pub async fn node(&self, node_id: &str, lease: Duration, dir: &tempfile::TempDir) -> PgStore {
        let mut options = PgOptions::new(node_id, dir.path().join(DATASTORE_KEY_FILE));
        options.lease = lease;
        self.connect(options).await
    }

    /// A plain connection to the schema, to look behind the store.
    pub async fn conn(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url).await.unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop is not async, and the test's runtime may be gone: a thread of its own.
        let (base, name) = (self.base.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&base).await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .execute(&mut conn)
                    .await
                    .map(drop)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test schema {}: {dropped:?}", self.name);
        }
    }
}
