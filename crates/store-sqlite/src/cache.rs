//! Current versions recently read by id, kept in memory so that a read by id of a hot
//! resource needs no SQLite read transaction (its WAL locks cost more than the look-up).
//!
//! Consistency with the writer: every commit that changed a current version bumps the
//! cache's epoch and drops those resources, under the cache's lock and before the writer
//! answers its callers. A reader notes the epoch before it reads SQLite and stores what it
//! read only if the epoch is unchanged, so a version read just before a commit is never kept
//! after it.

use std::collections::{HashMap, VecDeque};

use flint_store::Version;
use parking_lot::Mutex;

/// The JSON bytes the cache may hold.
const CAPACITY_BYTES: usize = 64 * 1024 * 1024;

#[derive(Default)]
struct State {
    epoch: u64,
    map: HashMap<String, Version>,
    /// Keys in insertion order, for eviction (may hold keys already dropped).
    order: VecDeque<String>,
    bytes: usize,
}

#[derive(Default)]
pub(crate) struct VersionCache {
    state: Mutex<State>,
}

pub(crate) fn key(resource_type: &str, id: &str) -> String {
    let mut k = String::with_capacity(resource_type.len() + id.len() + 1);
    k.push_str(resource_type);
    k.push('/');
    k.push_str(id);
    k
}

fn size(v: &Version) -> usize {
    v.json.as_ref().map_or(0, |j| j.len()) + 64
}

impl VersionCache {
    /// The cached current version and the epoch (for [`VersionCache::insert`] on a miss).
    pub(crate) fn get(&self, key: &str) -> (Option<Version>, u64) {
        let state = self.state.lock();
        (state.map.get(key).cloned(), state.epoch)
    }

    /// Keeps a version read from SQLite, unless a commit came since `epoch`.
    pub(crate) fn insert(&self, epoch: u64, key: String, version: Version) {
        let mut state = self.state.lock();
        if state.epoch != epoch {
            return;
        }
        state.bytes += size(&version);
        if let Some(old) = state.map.insert(key.clone(), version) {
            state.bytes -= size(&old);
        } else {
            state.order.push_back(key);
        }
        while state.bytes > CAPACITY_BYTES {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            if let Some(old) = state.map.remove(&oldest) {
                state.bytes -= size(&old);
            }
        }
        // Keys of dropped entries linger in `order`; rebuild it before it grows large.
        if state.order.len() > 4 * state.map.len() + 1024 {
            let keys: VecDeque<String> = state.map.keys().cloned().collect();
            state.order = keys;
        }
    }

    /// After a commit: drops the resources it wrote, and moves to the next epoch.
    pub(crate) fn committed(&self, written: &[String]) {
        let mut state = self.state.lock();
        state.epoch += 1;
        for k in written {
            if let Some(old) = state.map.remove(k) {
                state.bytes -= size(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(n: u64) -> Version {
        Version {
            resource_type: "Patient".into(),
            id: "a".into(),
            version: n,
            tx: n,
            last_updated: 0,
            method: flint_store::Method::Update,
            json: Some(bytes::Bytes::from_static(b"{}")),
        }
    }

    #[test]
    fn a_read_overtaken_by_a_commit_is_not_kept() {
        let cache = VersionCache::default();
        let (miss, epoch) = cache.get("Patient/a");
        assert!(miss.is_none());
        // A commit lands between the SQLite read and the insert.
        cache.committed(&["Patient/a".into()]);
        cache.insert(epoch, key("Patient", "a"), version(1));
        assert!(cache.get("Patient/a").0.is_none());
        // Read again after the commit: kept, until the next commit that writes it.
        let (_, epoch) = cache.get("Patient/a");
        cache.insert(epoch, key("Patient", "a"), version(2));
        assert_eq!(cache.get("Patient/a").0.unwrap().version, 2);
        cache.committed(&["Patient/b".into()]);
        assert_eq!(cache.get("Patient/a").0.unwrap().version, 2);
        cache.committed(&["Patient/a".into()]);
        assert!(cache.get("Patient/a").0.is_none());
    }
}
