//! The built-in operations, one per file. [`all`] is the one list that registers them.

mod compact;
mod convert;
mod everything;
mod expand;
mod healthcheck;
mod lookup;
mod meta;
mod purge;
mod reindex;
mod subsumes;
mod terms;
mod translate;
mod validate;
mod validate_code;

use std::sync::Arc;

use flint_store::Store;

use super::Operation;

pub(crate) use everything::SCOPE as EVERYTHING_SCOPE;

/// Every built-in operation.
pub(crate) fn all<S: Store>() -> Vec<Arc<dyn Operation<S>>> {
    vec![
        Arc::new(compact::Compact),
        Arc::new(convert::Convert),
        Arc::new(everything::Everything),
        Arc::new(expand::Expand),
        Arc::new(healthcheck::Healthcheck),
        Arc::new(lookup::Lookup),
        Arc::new(meta::Meta),
        Arc::new(meta::MetaAdd),
        Arc::new(meta::MetaDelete),
        Arc::new(purge::Purge),
        Arc::new(reindex::Reindex),
        Arc::new(subsumes::Subsumes),
        Arc::new(translate::Translate),
        Arc::new(validate::Validate),
        Arc::new(validate_code::CodeSystemValidateCode),
        Arc::new(validate_code::ValueSetValidateCode),
    ]
}
