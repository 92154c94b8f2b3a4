//! Authentication: API keys, expiring tokens and the htpasswd file, as StackStorm does them.
//!
//! - **API keys** are long random strings. Only `sha512("saltnpepper" + key)` is stored, which
//!   is StackStorm's `key_hash`, so hashes exported from StackStorm can be imported with
//!   `POST /apikeys {"key_hash": ...}`. For a 256-bit random key a single fast hash is enough.
//!   Lookups go by hash, and the stored hash is then compared in constant time.
//! - **Tokens** are 32 hex digits, valid until their expiry. Unlike StackStorm, which stores
//!   them in clear, the store keeps only their SHA-256.
//! - **Passwords** come from an htpasswd file (bcrypt `$2y$`/`$2b$`/`$2a$` and Apache
//!   `$apr1$` MD5 entries, the formats StackStorm's flat-file backend reads). The file is re-read
//!   on every token request, so edits take effect without a restart.
//!
//! Verified credentials are cached for a few seconds, so a webhook burst does not cost a
//! database read per request. A key deleted through the API leaves the cache at once. A key
//! deleted elsewhere (the offline CLI, another node) stops working within [`CACHE_TTL`].
//!
//! This module knows no HTTP: the server extracts the credential and maps [`AuthError`] to 401.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use sha2::{Sha256, Sha512};
use stormhook_storage::{ApiKey, StorageError, Store, Token, ids};
use subtle::ConstantTimeEq;

/// How long a verified credential is trusted without asking the store again.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// StackStorm's fixed salt for API key hashes (`st2common/util/hash.py`).
const API_KEY_SALT: &str = "saltnpepper";

/// A credential as the request presented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An `X-Auth-Token` (header, query or cookie).
    Token(String),
    /// An `St2-Api-Key` (header or query).
    ApiKey(String),
}

/// Why a request is not authenticated. Displays as StackStorm's 401 faultstrings.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credential at all.
    #[error("Unauthorized - One of Token or API key required.")]
    Missing,
    /// The token is unknown.
    #[error("Unauthorized")]
    TokenNotFound,
    /// The token has expired.
    #[error("Unauthorized - Token has expired.")]
    TokenExpired,
    /// No API key has this hash.
    #[error("Unauthorized - ApiKey with key_hash={0} not found.")]
    KeyNotFound(String),
    /// The API key is disabled.
    #[error("Unauthorized - API key is disabled.")]
    KeyDisabled,
    /// The store failed; this is a 500, not a 401.
    #[error(transparent)]
    Store(#[from] StorageError),
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Wrong, missing or malformed Basic credentials, or no htpasswd file configured.
    #[error("Invalid or missing credentials")]
    InvalidCredentials,
    /// The requested TTL exceeds the maximum.
    #[error("TTL specified {requested} is greater than max allowed {max}.")]
    TtlTooLong {
        /// What was asked for.
        requested: i64,
        /// The maximum.
        max: u64,
    },
    /// The requested TTL is not positive.
    #[error("{0} is less than the minimum of 1")]
    TtlTooShort(i64),
    /// Every password-check slot is taken (one per core): bcrypt is slow on purpose, and
    /// checks that queued without bound would starve every other login.
    #[error("Too many password checks in progress; retry later.")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StorageError),
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user name.
    pub user: String,
    /// When the token expires, if a token authenticated the request.
    pub token_expiry: Option<String>,
}

/// A freshly issued token (the only time its value is known).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The stored record (its `token` field holds the hash).
    pub record: Token,
    /// The bearer value to hand to the user.
    pub value: String,
}

/// Checks credentials and issues tokens.
pub struct Auth {
    store: Arc<dyn Store>,
    htpasswd: Option<PathBuf>,
    token_ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Cached)>>,
    /// Password checks running at once (bcrypt); one per core.
    password_checks: Arc<tokio::sync::Semaphore>,
}

#[derive(Debug, Clone)]
enum Cached {
    Key {
        stored_hash: String,
        user: String,
        enabled: bool,
    },
    Token {
        user: String,
        expiry: String,
    },
}

impl Auth {
    /// An authenticator over `store`, reading passwords from `htpasswd` (if any), issuing
    /// tokens valid for `token_ttl` at most.
    pub fn new(store: Arc<dyn Store>, htpasswd: Option<PathBuf>, token_ttl: Duration) -> Self {
        Self {
            store,
            htpasswd,
            token_ttl,
            cache: Mutex::default(),
            password_checks: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            )),
        }
    }

    /// The longest token lifetime.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    /// Verifies a credential.
    ///
    /// # Errors
    ///
    /// [`AuthError`] saying why it is refused.
    pub async fn verify(&self, credential: Option<&Credential>) -> Result<Principal, AuthError> {
        match credential {
            None => Err(AuthError::Missing),
            Some(Credential::ApiKey(key)) => self.verify_key(key).await,
            Some(Credential::Token(token)) => self.verify_token(token).await,
        }
    }

    async fn verify_key(&self, key: &str) -> Result<Principal, AuthError> {
        let hash = hash_api_key(key);
        let cache_key = format!("k:{hash}");
        let cached = match self.cached(&cache_key) {
            Some(c) => c,
            None => {
                let Some(found) = self.store.api_key_by_hash(&hash).await? else {
                    return Err(AuthError::KeyNotFound(hash));
                };
                let entry = Cached::Key {
                    stored_hash: found.key_hash,
                    user: found.user,
                    enabled: found.enabled,
                };
                self.remember(cache_key, entry.clone());
                entry
            }
        };
        let Cached::Key {
            stored_hash,
            user,
            enabled,
        } = cached
        else {
            return Err(AuthError::KeyNotFound(hash));
        };
        // The lookup went by hash; compare the digests in constant time all the same.
        if !bool::from(stored_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(AuthError::KeyNotFound(hash));
        }
        if !enabled {
            return Err(AuthError::KeyDisabled);
        }
        Ok(Principal {
            user,
            token_expiry: None,
        })
    }

    async fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        let hash = hash_token(token);
        let cache_key = format!("t:{hash}");
        let cached = match self.cached(&cache_key) {
            Some(c) => c,
            None => {
                let Some(found) = self.store.token(&hash).await? else {
                    return Err(AuthError::TokenNotFound);
                };
                let entry = Cached::Token {
                    user: found.user,
                    expiry: found.expiry,
                };
                self.remember(cache_key, entry.clone());
                entry
            }
        };
        let Cached::Token { user, expiry } = cached else {
            return Err(AuthError::TokenNotFound);
        };
        if expiry <= ids::now() {
            return Err(AuthError::TokenExpired);
        }
        Ok(Principal {
            user,
            token_expiry: Some(expiry),
        })
    }

    /// Forgets cached verifications (after an API key changes).
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    fn cached(&self, key: &str) -> Option<Cached> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, c)| c.clone())
    }

    fn remember(&self, key: String, entry: Cached) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            }
            cache.insert(key, (Instant::now(), entry));
        }
    }

    /// Whether `password` is `user`'s in the htpasswd file. An unknown user costs as much as a
    /// wrong password (the password is checked against another entry's hash), so user names
    /// cannot be told apart by timing.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidCredentials`], or [`TokenError::Busy`] when as many checks as the
    /// machine has cores are running (bcrypt is slow on purpose; the caller answers 503).
    pub async fn check_password(&self, user: &str, password: &str) -> Result<(), TokenError> {
        let Ok(slot) = Arc::clone(&self.password_checks).try_acquire_owned() else {
            return Err(TokenError::Busy);
        };
        if self.password_ok(user, password, slot).await {
            Ok(())
        } else {
            Err(TokenError::InvalidCredentials)
        }
    }

    /// Issues a token for `user`, whose password the caller has checked with
    /// [`Auth::check_password`].
    ///
    /// # Errors
    ///
    /// [`TokenError`]: a TTL out of range, or a store failure.
    pub async fn issue_token_for(
        &self,
        user: &str,
        ttl: Option<i64>,
    ) -> Result<IssuedToken, TokenError> {
        let ttl = self.lifetime(ttl)?;
        let value = uuid::Uuid::new_v4().simple().to_string();
        let expiry = chrono::Utc::now() + chrono::Duration::seconds(ttl as i64);
        let record = Token {
            id: ids::object_id(),
            user: user.to_owned(),
            token: hash_token(&value),
            expiry: ids::format_time(expiry),
            metadata: serde_json::json!({}),
        };
        self.store.insert_token(&record).await?;
        Ok(IssuedToken { record, value })
    }

    /// The lifetime of a new token: `ttl` seconds, or the longest allowed.
    fn lifetime(&self, ttl: Option<i64>) -> Result<u64, TokenError> {
        let max = self.token_ttl.as_secs();
        match ttl {
            None => Ok(max),
            Some(t) if t < 1 => Err(TokenError::TtlTooShort(t)),
            Some(t) if t as u64 > max => Err(TokenError::TtlTooLong { requested: t, max }),
            Some(t) => Ok(t as u64),
        }
    }

    /// Checks the password on the blocking pool; `slot` is held until the check ends, even if
    /// the request is gone by then.
    async fn password_ok(
        &self,
        user: &str,
        password: &str,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> bool {
        let Some(path) = &self.htpasswd else {
            return false;
        };
        let Ok(text) = tokio::fs::read_to_string(path).await else {
            tracing::error!(path = %path.display(), "cannot read the htpasswd file");
            return false;
        };
        let (user, password) = (user.to_owned(), password.to_owned());
        // bcrypt is deliberately slow: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let ok = htpasswd_check(&text, &user, &password);
            drop(slot);
            ok
        })
        .await
        .unwrap_or(false)
    }

    /// Creates an API key for `user`; returns the record and the key (shown once).
    ///
    /// # Errors
    ///
    /// The store fails.
    pub async fn create_api_key(
        &self,
        user: &str,
        metadata: serde_json::Value,
    ) -> Result<(ApiKey, String), StorageError> {
        let key = new_api_key();
        let record = ApiKey {
            id: ids::object_id(),
            user: user.to_owned(),
            key_hash: hash_api_key(&key),
            metadata,
            created_at: ids::now(),
            enabled: true,
        };
        self.store.insert_api_key(&record).await?;
        Ok((record, key))
    }
}

/// StackStorm's API key hash: hex SHA-512 of the salted key.
pub fn hash_api_key(key: &str) -> String {
    let mut hasher = Sha512::new();
    hasher.update(API_KEY_SALT.as_bytes());
    hasher.update(key.as_bytes());
    hex::encode(hasher.finalize())
}

/// How a token is stored: hex SHA-256 of its value.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new API key: 256 random bits, URL-safe base64 without padding (43 characters).
pub fn new_api_key() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks `user:password` against htpasswd text (`user:hash` lines, `#` comments).
///
/// A user who is not in the file costs the same as a wrong password: the password is checked
/// against the file's first entry (same algorithm, same bcrypt cost) and the answer is `false`
/// whatever that check says. Without it an unknown user answered at once and a known one after
/// a bcrypt round, which told user names apart.
pub fn htpasswd_check(text: &str, user: &str, password: &str) -> bool {
    let entries = || {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
    };
    match entries().find(|(u, _)| *u == user) {
        Some((_, hash)) => hash_matches(user, password, hash),
        None => {
            let decoy = entries()
                .next()
                .map_or(DECOY_HASH.as_str(), |(_, hash)| hash);
            let _ = hash_matches(user, password, decoy);
            false
        }
    }
}

/// A bcrypt hash (cost 10, `htpasswd -B -C 10`) of a random password, checked for users with
/// no entry when the file has no entry to borrow.
static DECOY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    bcrypt::hash(uuid::Uuid::new_v4().simple().to_string(), 10).unwrap_or_default()
});

fn hash_matches(user: &str, password: &str, hash: &str) -> bool {
    if hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$") {
        bcrypt::verify(password, hash).unwrap_or(false)
    } else if let Some(rest) = hash.strip_prefix("$apr1$") {
        let salt = rest.split('$').next().unwrap_or_default();
        bool::from(apr1(password, salt).as_bytes().ct_eq(hash.as_bytes()))
    } else {
        tracing::warn!(
            user,
            "htpasswd entry uses an unsupported hash (use bcrypt or apr1)"
        );
        false
    }
}

/// Apache's `$apr1$` MD5-crypt (the algorithm of `htpasswd -m` and `openssl passwd -apr1`).
fn apr1(password: &str, salt: &str) -> String {
    const MAGIC: &str = "$apr1$";
    let salt = &salt[..salt.len().min(8)];
    let (pw, s) = (password.as_bytes(), salt.as_bytes());
    let mut alt = Md5::new();
    alt.update(pw);
    alt.update(s);
    alt.update(pw);
    let alt = alt.finalize();
    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(MAGIC.as_bytes());
    ctx.update(s);
    let mut remaining = pw.len();
    while remaining > 0 {
        let n = remaining.min(16);
        ctx.update(&alt[..n]);
        remaining -= n;
    }
    let mut i = pw.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1.min(pw.len())]);
        }
        i >>= 1;
    }
    let mut digest = ctx.finalize();
    for round in 0..1000 {
        let mut next = Md5::new();
        if round & 1 == 1 {
            next.update(pw);
        } else {
            next.update(digest);
        }
        if round % 3 != 0 {
            next.update(s);
        }
        if round % 7 != 0 {
            next.update(pw);
        }
        if round & 1 == 1 {
            next.update(digest);
        } else {
            next.update(pw);
        }
        digest = next.finalize();
    }
    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::from(MAGIC);
    out.push_str(salt);
    out.push('$');
    let mut encode = |a: u8, b: u8, c: u8, n: usize| {
        let mut v = (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(c);
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let d = digest;
    encode(d[0], d[6], d[12], 4);
    encode(d[1], d[7], d[13], 4);
    encode(d[2], d[8], d[14], 4);
    encode(d[3], d[9], d[15], 4);
    encode(d[4], d[10], d[5], 4);
    encode(0, 0, d[11], 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown user costs a bcrypt round too, so user names cannot be found by timing. (The
    /// two are measured in the same run and compared; before, an unknown user answered in
    /// microseconds and a known one after a bcrypt round.)
    #[test]
    fn unknown_users_cost_as_much_as_known_ones() {
        let file = format!("alice:{}\n", bcrypt::hash("secret", 8).unwrap());
        let time = |user: &str| {
            let started = std::time::Instant::now();
            for _ in 0..4 {
                assert!(!htpasswd_check(&file, user, "wrong"));
            }
            started.elapsed()
        };
        let known = time("alice");
        let unknown = time("mallory");
        assert!(
            unknown * 2 > known,
            "unknown user {unknown:?} vs known user {known:?}"
        );
        // A file with no entry at all still costs a bcrypt round (cost 10: four times one of
        // the cost-8 rounds above).
        let _ = DECOY_HASH.len();
        let started = std::time::Instant::now();
        assert!(!htpasswd_check("# nobody\n", "mallory", "wrong"));
        let empty = started.elapsed();
        assert!(
            empty * 2 > known / 4,
            "empty file {empty:?} vs 4 known {known:?}"
        );
    }

    #[test]
    fn apr1_matches_openssl() {
        // `openssl passwd -apr1 -salt abcdefgh secret`
        assert_eq!(
            apr1("secret", "abcdefgh"),
            "$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/"
        );
        let file = "# users\nalice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n";
        assert!(htpasswd_check(file, "alice", "secret"));
        assert!(!htpasswd_check(file, "alice", "Secret"));
        assert!(!htpasswd_check(file, "bob", "secret"));
    }

    #[test]
    fn bcrypt_entries_verify() {
        let hash = bcrypt::hash("hunter2", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let file = format!("carol:{hash}\n");
        assert!(htpasswd_check(&file, "carol", "hunter2"));
        assert!(!htpasswd_check(&file, "carol", "hunter3"));
    }

    #[test]
    fn api_key_hashes_are_stackstorms() {
        let hash = hash_api_key("x");
        assert_eq!(hash.len(), 128);
        assert_eq!(hash, hex::encode(Sha512::digest(b"saltnpepperx")));
        let key = new_api_key();
        assert_eq!(key.len(), 43);
        assert_ne!(key, new_api_key());
    }
}
