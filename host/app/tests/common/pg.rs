//! PostgreSQL for the multi-node tests: the URL from `STORMHOOK_TEST_DATABASE_URL` (`.ci/run`
//! sets it), and a fresh schema per test so tests run in parallel on one database.
//!
//! Include it with `#[path = "common/pg.rs"] mod pg;`.

#![allow(dead_code, unreachable_pub)]

/// The test database's URL, or `None` after saying loudly that the test is skipped.
pub fn test_database_url(test: &str) -> Option<String> {
    match std::env::var("STORMHOOK_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "SKIPPED {test}: STORMHOOK_TEST_DATABASE_URL is not set (CI sets it; \
                 for example postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A new empty schema in the test database and the URL that makes it the connection's
/// `search_path` (what `stormhook serve --database-url` takes). `None` when the test is
/// skipped (no URL); panics when the URL is set but the database cannot be reached.
pub async fn fresh_schema_url(test: &str) -> Option<String> {
    let base = test_database_url(test)?;
    let schema = format!("st_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("STORMHOOK_TEST_DATABASE_URL={base} is unreachable: {e}"));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}
