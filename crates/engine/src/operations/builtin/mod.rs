//! The built-in operations, one per file. [`all`] is the one list that registers them.

mod healthcheck;
mod meta;
mod purge;
mod reindex;
mod validate;

use std::sync::Arc;

use flint_store::Store;

use super::Operation;

/// Every built-in operation.
pub(crate) fn all<S: Store>() -> Vec<Arc<dyn Operation<S>>> {
    vec![
        Arc::new(healthcheck::Healthcheck),
        Arc::new(meta::Meta),
        Arc::new(meta::MetaAdd),
        Arc::new(meta::MetaDelete),
        Arc::new(purge::Purge),
        Arc::new(reindex::Reindex),
        Arc::new(validate::Validate),
    ]
}
