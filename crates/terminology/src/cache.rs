//! Built [`Hierarchy`]s kept for reuse: those of the embedded core code systems for the life
//! of the process, the others in a [`Cache`] the caller may keep between requests.
//!
//! A hierarchy is cached by the identity of the resource it was built from (the address of
//! the JSON value). The cache holds that resource alive, so the address cannot be reused by
//! another value while the entry exists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use flint_fhir::Result;

use crate::hierarchy::Hierarchy;
use crate::source::Resource;

/// How many hierarchies of non-core code systems a [`Cache`] keeps by default.
pub const DEFAULT_CACHE_ENTRIES: usize = 64;

/// Hierarchies of non-core code systems, keyed by resource identity. Cheap to create; keep
/// one for the life of a server to reuse hierarchies across requests when the [`crate::Source`]
/// hands out the same `Arc` for an unchanged resource.
#[derive(Debug)]
pub struct Cache {
    entries: Mutex<HashMap<usize, (Resource, Arc<Hierarchy>)>>,
    capacity: usize,
}

impl Default for Cache {
    fn default() -> Cache {
        Cache::with_capacity(DEFAULT_CACHE_ENTRIES)
    }
}

impl Cache {
    /// A cache keeping at most `capacity` hierarchies (it is emptied when full).
    pub fn with_capacity(capacity: usize) -> Cache {
        Cache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The hierarchy of a CodeSystem resource, built on first use.
    ///
    /// # Errors
    /// As [`Hierarchy::read`].
    pub fn hierarchy(&self, cs: &Resource) -> Result<Arc<Hierarchy>> {
        let key = cs.address();
        if let Resource::Core(_) = cs {
            return core_hierarchy(key, cs);
        }
        if let Some((_, h)) = self.lock().get(&key) {
            return Ok(h.clone());
        }
        let built = Arc::new(Hierarchy::read(cs)?);
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, (cs.clone(), built.clone()));
        Ok(built)
    }

    /// How many non-core hierarchies are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no non-core hierarchy is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, (Resource, Arc<Hierarchy>)>> {
        // A panic while holding the lock cannot leave the map half-written: every update is a
        // single insert or clear. So a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The hierarchies of the embedded code systems, built once per process (the set is fixed).
fn core_hierarchy(key: usize, cs: &Resource) -> Result<Arc<Hierarchy>> {
    type CoreMap = Mutex<HashMap<usize, Arc<Hierarchy>>>;
    static CORE: OnceLock<CoreMap> = OnceLock::new();
    let map = CORE.get_or_init(Default::default);
    let lock = || {
        map.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(h) = lock().get(&key) {
        return Ok(h.clone());
    }
    // Built outside the lock: two threads may build the same one, and the second insert wins.
    let built = Arc::new(Hierarchy::read(cs)?);
    lock().insert(key, built.clone());
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Core, Source};
    use serde_json::json;

    #[test]
    fn the_same_resource_is_built_once() {
        let cache = Cache::with_capacity(2);
        let cs: Resource =
            json!({"resourceType": "CodeSystem", "url": "u", "content": "complete"}).into();
        let a = cache.hierarchy(&cs).unwrap();
        let b = cache.hierarchy(&cs.clone()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(cache.len(), 1);
        for i in 0..3 {
            let other: Resource =
                json!({"resourceType": "CodeSystem", "url": format!("u{i}"), "content": "complete"}).into();
            cache.hierarchy(&other).unwrap();
        }
        assert!(cache.len() <= 2);
        let core = Core
            .code_system("http://hl7.org/fhir/administrative-gender", None)
            .unwrap()
            .unwrap();
        let x = cache.hierarchy(&core).unwrap();
        let y = Cache::default().hierarchy(&core).unwrap();
        assert!(
            Arc::ptr_eq(&x, &y),
            "core hierarchies are shared by every cache"
        );
    }
}
