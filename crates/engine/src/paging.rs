//! Sealed paging links. The whole state of a paging session (the query, its snapshot, the
//! keyset position, when the link was issued) travels in the link, encrypted and
//! authenticated with AES-256-GCM: a link reveals nothing of the query, cannot be altered, and
//! any node can open it, because the keys live in the store.
//!
//! Keys rotate every two hours; a key opens links for at most four hours after it was made,
//! and the three newest are kept. A link not followed within four hours of being issued has
//! expired: 410 with an OperationOutcome, never a wrong page.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use flint_fhir::{Error, IssueType, Result};
use flint_store::{PagingKey, Store};
use serde_json::{json, Value};

use crate::Engine;

const HOUR: i64 = 3_600_000_000;
/// A new key is made when the newest is this old.
pub const ROTATE_AFTER: i64 = 2 * HOUR;
/// A key opens links for this long after it was made; a link expires this long after it was
/// issued.
pub const VALID_FOR: i64 = 4 * HOUR;
/// Keys kept in the store.
pub const KEYS_KEPT: usize = 3;

/// The source of time, injectable for tests.
pub trait Clock: Send + Sync {
    /// Microseconds since the epoch.
    fn now(&self) -> i64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    }
}

/// What a paging link carries.
#[derive(Clone, Debug, PartialEq)]
pub struct PageState {
    /// What is paged (`Patient` for a type search); the caller interprets it.
    pub scope: String,
    /// The request's parameters, as applied.
    pub params: Vec<(String, String)>,
    pub snapshot: u64,
    /// The keyset position (`s123`, `iabc`), or none for the first page.
    pub after: Option<String>,
    /// When the link was issued (set by [`Engine::seal_page`]).
    pub issued: i64,
    /// The total, once counted: the snapshot fixes it, so later pages need not count again.
    pub total: Option<u64>,
    /// Who the link was issued to (tenant and caller, see [`crate::Context::owner`]): a link
    /// opens only for them.
    pub owner: String,
}

fn bad_link() -> Error {
    Error::invalid("this paging link is not valid (altered, or not issued by this server)")
}

fn expired() -> Error {
    Error::new(
        IssueType::Expired,
        "this paging link has expired; run the search again",
    )
    .with_status(410)
}

impl<S: Store> Engine<S> {
    /// The key to seal with now: the newest, or a new one when the newest is due for rotation.
    async fn sealing_key(&self) -> Result<PagingKey> {
        let now = self.clock.now();
        if let Some(k) = self
            .paging_keys
            .read()
            .first()
            .filter(|k| now - k.created < ROTATE_AFTER)
        {
            return Ok(k.clone());
        }
        // Another node may have rotated already.
        let stored = self.store().paging_keys()?;
        if let Some(k) = stored.first().filter(|k| now - k.created < ROTATE_AFTER) {
            let k = k.clone();
            *self.paging_keys.write() = stored;
            return Ok(k);
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| Error::internal(format!("no randomness for a paging key: {e}")))?;
        let created = now;
        self.store()
            .write(move |txn| txn.add_paging_key(created, &key, KEYS_KEPT))
            .await?;
        let stored = self.store().paging_keys()?;
        let newest = stored
            .first()
            .cloned()
            .ok_or_else(|| Error::internal("the new paging key was not stored"))?;
        *self.paging_keys.write() = stored;
        Ok(newest)
    }

    fn opening_key(&self, id: u64) -> Result<PagingKey> {
        if let Some(k) = self.paging_keys.read().iter().find(|k| k.id == id) {
            return Ok(k.clone());
        }
        // Made by another node, or since we last looked.
        let stored = self.store().paging_keys()?;
        let found = stored.iter().find(|k| k.id == id).cloned();
        *self.paging_keys.write() = stored;
        found.ok_or_else(expired)
    }

    /// Seals a paging state into an opaque, URL-safe token.
    ///
    /// # Errors
    /// A store fault while rotating keys.
    pub async fn seal_page(&self, state: &PageState) -> Result<String> {
        let key = self.sealing_key().await?;
        let plain = json!({
            "s": state.scope,
            "p": state.params.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "t": state.snapshot,
            "a": state.after,
            "i": self.clock.now(),
            "n": state.total,
            "o": state.owner,
        })
        .to_string();
        let cipher = Aes256Gcm::new_from_slice(&key.key)
            .map_err(|_| Error::internal("bad paging key length"))?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::internal(format!("no randomness for a nonce: {e}")))?;
        let id = key.id.to_be_bytes();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: &id,
                },
            )
            .map_err(|_| Error::internal("cannot seal a paging link"))?;
        let mut token = Vec::with_capacity(8 + 12 + sealed.len());
        token.extend_from_slice(&id);
        token.extend_from_slice(&nonce);
        token.extend_from_slice(&sealed);
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token))
    }

    /// Opens a token made by [`Engine::seal_page`].
    ///
    /// # Errors
    /// 400 for a token that is malformed or fails authentication; 410 when it or its key has
    /// expired.
    pub fn open_page(&self, token: &str) -> Result<PageState> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad_link())?;
        if bytes.len() < 8 + 12 + 16 {
            return Err(bad_link());
        }
        let (id, rest) = bytes.split_at(8);
        let (nonce, sealed) = rest.split_at(12);
        let key_id = u64::from_be_bytes(id.try_into().map_err(|_| bad_link())?);
        let key = self.opening_key(key_id)?;
        let now = self.clock.now();
        if now - key.created > VALID_FOR {
            return Err(expired());
        }
        let cipher = Aes256Gcm::new_from_slice(&key.key)
            .map_err(|_| Error::internal("bad paging key length"))?;
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: id,
                },
            )
            .map_err(|_| bad_link())?;
        let v: Value = serde_json::from_slice(&plain).map_err(|_| bad_link())?;
        let issued = v["i"].as_i64().ok_or_else(bad_link)?;
        if now - issued > VALID_FOR {
            return Err(expired());
        }
        let params = v["p"]
            .as_array()
            .ok_or_else(bad_link)?
            .iter()
            .map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad_link)?;
        Ok(PageState {
            scope: v["s"].as_str().ok_or_else(bad_link)?.to_string(),
            params,
            snapshot: v["t"].as_u64().ok_or_else(bad_link)?,
            after: v["a"].as_str().map(str::to_string),
            issued,
            total: v["n"].as_u64(),
            owner: v["o"].as_str().unwrap_or("").to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    use super::*;

    struct TestClock(Arc<AtomicI64>);

    impl Clock for TestClock {
        fn now(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn state(after: &str) -> PageState {
        PageState {
            scope: "search:Patient".into(),
            params: vec![("family".into(), "smith".into())],
            snapshot: 7,
            after: Some(after.into()),
            issued: 0,
            total: None,
            owner: "default\u{1}".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn links_rotate_keys_and_expire_on_an_injected_clock() {
        let dir = tempfile::tempdir().unwrap();
        let store = flint_store_sqlite::SqliteStore::open(dir.path()).unwrap();
        let time = Arc::new(AtomicI64::new(1_000 * HOUR));
        let engine = Engine::with_clock(store.clone(), Box::new(TestClock(Arc::clone(&time))));
        let t0 = time.load(Ordering::SeqCst);
        let set = |t: i64| time.store(t, Ordering::SeqCst);

        let first = engine.seal_page(&state("s1")).await.unwrap();
        let opened = engine.open_page(&first).unwrap();
        assert_eq!(
            (
                opened.scope.as_str(),
                opened.snapshot,
                opened.after.as_deref()
            ),
            ("search:Patient", 7, Some("s1"))
        );
        assert_eq!(
            opened.params,
            vec![("family".to_string(), "smith".to_string())]
        );

        // Within four hours the link opens; after, it has expired (410), never a wrong page.
        set(t0 + 4 * HOUR - 1);
        assert!(engine.open_page(&first).is_ok());
        set(t0 + 4 * HOUR + 1);
        assert_eq!(engine.open_page(&first).unwrap_err().status(), 410);

        // A key is used for two hours, then a new one is made; older links keep opening
        // while their key is under four hours old.
        set(t0 + HOUR);
        let same_key = engine.seal_page(&state("s2")).await.unwrap();
        assert_eq!(store.paging_keys().unwrap().len(), 1);
        set(t0 + 2 * HOUR + 1);
        let rotated = engine.seal_page(&state("s3")).await.unwrap();
        assert_eq!(store.paging_keys().unwrap().len(), 2);
        assert_ne!(same_key[..11], rotated[..11], "a new key id");
        set(t0 + 3 * HOUR);
        assert!(engine.open_page(&same_key).is_ok());
        assert!(engine.open_page(&rotated).is_ok());

        // Only three keys are kept, however long the server runs.
        for i in 2..10 {
            set(t0 + i * 2 * HOUR + 1);
            engine.seal_page(&state("s")).await.unwrap();
        }
        assert_eq!(store.paging_keys().unwrap().len(), KEYS_KEPT);

        // Another node (another engine on the same store) opens links this one sealed.
        let other = Engine::with_clock(store.clone(), Box::new(TestClock(Arc::clone(&time))));
        let here = engine.seal_page(&state("s9")).await.unwrap();
        assert_eq!(other.open_page(&here).unwrap().after.as_deref(), Some("s9"));

        // Any change to a token is detected.
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&here)
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(engine.open_page(&tampered).unwrap_err().status(), 400);
        assert_eq!(engine.open_page("%%%").unwrap_err().status(), 400);
    }
}
