//! The built-in operations, one per file. [`all`] is the one list that registers them.

mod compact;
mod convert;
mod everything;
mod expand;
mod export;
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

/// The types of the Patient compartment that this server knows.
pub(crate) fn compartment_type_names() -> Vec<String> {
    let model = flint_fhir::model::r4();
    everything::compartment_types()
        .into_iter()
        .map(|(t, _)| t.to_string())
        .filter(|t| model.is_resource_type(t))
        .collect()
}

/// The parameters that tie a type to a patient (`{def}` for the Patient itself); empty
/// for a type outside the Patient compartment.
pub(crate) fn compartment_links(resource_type: &str) -> Vec<String> {
    everything::compartment_types()
        .into_iter()
        .find(|(t, _)| *t == resource_type)
        .map(|(_, links)| links.into_iter().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Every built-in operation.
pub(crate) fn all<S: Store>() -> Vec<Arc<dyn Operation<S>>> {
    vec![
        Arc::new(crate::custom::bot::Deploy),
        Arc::new(crate::custom::bot::Execute),
        Arc::new(compact::Compact),
        Arc::new(convert::Convert),
        Arc::new(everything::Everything),
        Arc::new(expand::Expand),
        Arc::new(export::SystemExport),
        Arc::new(export::PatientExport),
        Arc::new(export::GroupExport),
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
