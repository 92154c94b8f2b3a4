//! The store a bench's server runs on: SQLite (the [`TestServer`] the other benches and the
//! tests use), and PostgreSQL as well when `STORMHOOK_BENCH_DATABASE_URL` (or
//! `STORMHOOK_TEST_DATABASE_URL`) names a database. A PostgreSQL server gets a schema of its
//! own, created for it and dropped by [`Server::finish`], and is wired like [`TestServer`]
//! (same composition root, runtime settings, rules folder and API key) but on a
//! [`PgStore`]: one node, the default pool of 10 connections, `synchronous_commit = on`.
//!
//! Include it with `#[path = "common/backend.rs"] mod backend;`.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection as _, PgConnection, Row as _};
use stormhook_storage::postgres::{PgOptions, PgStore};
use stormhook_tests::TestServer;

/// Which store.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// SQLite in a temporary data directory.
    Sqlite,
    /// PostgreSQL at this URL (a fresh schema in it per server).
    Postgres(String),
}

impl Backend {
    /// SQLite, then PostgreSQL when a database URL is set.
    pub(crate) fn all() -> Vec<Self> {
        let mut all = vec![Self::Sqlite];
        let url = [
            "STORMHOOK_BENCH_DATABASE_URL",
            "STORMHOOK_TEST_DATABASE_URL",
        ]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
        match url {
            Some(url) => all.push(Self::Postgres(url)),
            None => eprintln!(
                "(PostgreSQL skipped: set STORMHOOK_BENCH_DATABASE_URL or \
                 STORMHOOK_TEST_DATABASE_URL to measure it too)"
            ),
        }
        all
    }

    /// `sqlite` or `postgres`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// A running server on one backend.
pub(crate) struct Server {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// An API key it accepts.
    pub key: String,
    inner: Inner,
}

enum Inner {
    Sqlite(TestServer),
    Postgres {
        /// Holds the packs and the datastore key.
        _dir: tempfile::TempDir,
        stop: tokio::sync::oneshot::Sender<()>,
        store: PgStore,
        db: Database,
    },
}

/// A direct connection to a server's PostgreSQL schema, to look behind it.
pub(crate) struct Database {
    /// The database without the schema (to drop the schema).
    base_url: String,
    schema: String,
    conn: PgConnection,
    /// Whether dropping it drops the schema (the first node's).
    owner: bool,
}

impl Server {
    /// Starts a server on `backend` with rule files `(name, yaml)` in pack `t`, and the example
    /// packs when `examples`.
    pub(crate) async fn start(
        backend: &Backend,
        rules: Vec<(String, String)>,
        examples: bool,
    ) -> Self {
        match backend {
            Backend::Sqlite => {
                let mut builder = TestServer::builder().rules(rules);
                if examples {
                    builder = builder.examples();
                }
                let server = builder.start().await;
                Self {
                    base: server.base.clone(),
                    key: server.key.clone(),
                    inner: Inner::Sqlite(server),
                }
            }
            Backend::Postgres(url) => {
                let db = Database::fresh(url).await;
                start_postgres(db, 1, rules, examples).await
            }
        }
    }

    /// `nodes` servers sharing one store: on PostgreSQL, `nodes` nodes on one fresh schema
    /// (each its own packs folder with the same rules and packs, and its own node id); on
    /// SQLite only one node can run, so `nodes` must be 1.
    pub(crate) async fn start_nodes(
        backend: &Backend,
        nodes: usize,
        rules: Vec<(String, String)>,
        examples: bool,
    ) -> Vec<Self> {
        match backend {
            Backend::Sqlite => {
                assert_eq!(nodes, 1, "SQLite serves one node");
                vec![Self::start(backend, rules, examples).await]
            }
            Backend::Postgres(url) => {
                let db = Database::fresh(url).await;
                let schema_url = db.schema_url();
                let mut servers = vec![start_postgres(db, 1, rules.clone(), examples).await];
                for node in 2..=nodes {
                    let db = Database::attach(url, &schema_url).await;
                    servers.push(start_postgres(db, node, rules.clone(), examples).await);
                }
                servers
            }
        }
    }

    /// The server's store, to look behind its API.
    pub(crate) fn store(&self) -> Arc<dyn stormhook_storage::Store> {
        match &self.inner {
            Inner::Sqlite(server) => server.store.clone(),
            Inner::Postgres { store, .. } => Arc::new(store.clone()),
        }
    }

    /// `base + path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client that sends the server's API key.
    pub(crate) fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("St2-Api-Key", self.key.parse().unwrap());
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap()
    }

    /// The direct connection to its schema (PostgreSQL only).
    pub(crate) fn database(&mut self) -> Option<&mut Database> {
        match &mut self.inner {
            Inner::Sqlite(_) => None,
            Inner::Postgres { db, .. } => Some(db),
        }
    }

    /// Stops it; on PostgreSQL closes the store and drops its schema.
    pub(crate) async fn finish(self) {
        match self.inner {
            Inner::Sqlite(server) => drop(server),
            Inner::Postgres {
                _dir,
                stop,
                store,
                db,
            } => {
                let _ = stop.send(());
                // Let the server finish its requests and stop its tasks.
                tokio::time::sleep(Duration::from_millis(500)).await;
                store.close().await;
                db.drop_schema().await;
            }
        }
    }
}

/// Node `node` (1 is the first) of a PostgreSQL server on `db`'s schema.
async fn start_postgres(
    db: Database,
    node: usize,
    rules: Vec<(String, String)>,
    examples: bool,
) -> Server {
    let url = db.base_url.clone();
    let dir = tempfile::tempdir().unwrap();
    let packs_dir = dir.path().join("packs");
    let rules_dir = packs_dir.join("t/rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    for (name, yaml) in &rules {
        std::fs::write(rules_dir.join(format!("{name}.yaml")), yaml).unwrap();
    }
    if examples {
        stormhook_tests::install_examples(&packs_dir);
    }
    let configs_dir = dir.path().join("configs");
    std::fs::create_dir_all(&configs_dir).unwrap();

    let options = PgOptions::new(
        format!("bench-{}-{node}", std::process::id()),
        dir.path().join("datastore_key.json"),
    );
    let store = PgStore::connect(&db.schema_url(), options)
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL at {url}: {e}"));
    let app = stormhook_server::Stormhook::start(stormhook_server::Config {
        automation: stormhook_automation::Settings {
            store: Arc::new(store.clone()),
            packs_dir,
            configs_dir: Some(configs_dir),
            runtime: stormhook_tests::test_runtime_config(
                stormhook_runtime::RuntimeConfig::default(),
            ),
            http_policy: Default::default(),
            core_local: true,
            watch: false,
            ingest_queue: stormhook_automation::app::INGEST_QUEUE,
            retention: stormhook_automation::retention::Retention::keep_forever(),
        },
        htpasswd: None,
        token_ttl: Duration::from_secs(86_400),
    })
    .await
    .expect("the application starts");
    let report = app.automation.plugins_loaded().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let (_, key) = app
        .auth
        .create_api_key("admin", serde_json::json!({}))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = stormhook_server::Serving {
        settings: stormhook_server::Settings {
            api_url: base.clone(),
            ..Default::default()
        },
        limits: Default::default(),
        tls: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, serving, async {
        let _ = stopped.await;
    }));
    Server {
        base,
        key,
        inner: Inner::Postgres {
            _dir: dir,
            stop,
            store,
            db,
        },
    }
}

impl Database {
    /// A new empty schema in the database at `base_url`.
    async fn fresh(base_url: &str) -> Self {
        let schema = format!(
            "bench_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut conn = PgConnection::connect(base_url)
            .await
            .unwrap_or_else(|e| panic!("the bench database {base_url} is unreachable: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .unwrap();
        Self {
            base_url: base_url.to_owned(),
            schema,
            conn,
            owner: true,
        }
    }

    /// Another connection to the schema of `schema_url` (made by [`Database::fresh`] on
    /// `base_url`), for a further node; it does not own the schema: only the first node's
    /// [`Server::finish`] drops it, so finish the others first.
    async fn attach(base_url: &str, schema_url: &str) -> Self {
        let schema = schema_url
            .rsplit("search_path%3D")
            .next()
            .expect("a schema URL")
            .to_owned();
        let conn = PgConnection::connect(base_url)
            .await
            .unwrap_or_else(|e| panic!("the bench database {base_url} is unreachable: {e}"));
        Self {
            base_url: base_url.to_owned(),
            schema,
            conn,
            owner: false,
        }
    }

    /// The URL that makes the schema the connection's `search_path`.
    fn schema_url(&self) -> String {
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.base_url, self.schema
        )
    }

    /// The server's current WAL position (`pg_current_wal_lsn()`).
    pub(crate) async fn wal_lsn(&mut self) -> String {
        sqlx::query("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&mut self.conn)
            .await
            .unwrap()
            .get(0)
    }

    /// The WAL bytes written between two positions (`pg_wal_lsn_diff`). The WAL is the whole
    /// server's: whatever else runs on it meanwhile counts too.
    pub(crate) async fn wal_bytes(&mut self, from: &str, to: &str) -> f64 {
        sqlx::query("SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::float8")
            .bind(to)
            .bind(from)
            .fetch_one(&mut self.conn)
            .await
            .unwrap()
            .get(0)
    }

    /// The rows of every table of the schema, by table.
    pub(crate) async fn rows(&mut self) -> Vec<(String, i64)> {
        let tables: Vec<String> = sqlx::query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .bind(&self.schema)
        .fetch_all(&mut self.conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
        let mut rows = Vec::new();
        for table in tables {
            let count: i64 =
                sqlx::query(&format!("SELECT count(*) FROM {}.\"{table}\"", self.schema))
                    .fetch_one(&mut self.conn)
                    .await
                    .unwrap()
                    .get(0);
            rows.push((table, count));
        }
        rows
    }

    async fn drop_schema(mut self) {
        if !self.owner {
            return;
        }
        if let Err(e) = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&mut self.conn)
            .await
        {
            eprintln!("(dropping the bench schema {} failed: {e})", self.schema);
        }
    }
}
