//! `ValueSet/$expand` (R4 `ValueSet-expand`, type and instance level): the codes of a value
//! set, from its `compose` over the code systems held here or from a stored expansion, with
//! a text `filter`, paging by `offset`/`count` (`total` counts the whole expansion),
//! `displayLanguage`, `activeOnly`, designations and system versions.

use std::sync::Arc;

use flint_fhir::{Error, Result};
use flint_store::Store;
use flint_terminology::{ExpandRequest, Terminology};
use serde_json::json;

use super::terms::{refuse_unsupported, subject};
use crate::operations::{Call, Definition, Operation, Output};
use crate::Engine;

pub(crate) struct Expand;

impl<S: Store> Operation<S> for Expand {
    fn definition(&self) -> Definition {
        Definition::r4("ValueSet-expand", |d| d["affectsState"] = json!(false))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        refuse_unsupported(
            call,
            &["context", "contextDirection", "date", "designation"],
        )?;
        let value_set = subject(call, "url", "valueSet", "valueSetVersion")?.ok_or_else(|| {
            Error::invalid(
                "$expand needs the value set: invoke it on ValueSet/[id], or give 'url' or 'valueSet'",
            )
            .at("url")
        })?;
        let inputs = &call.inputs;
        let owned = |name: &str| inputs.strs(name).map(str::to_string).collect::<Vec<_>>();
        let mut request = ExpandRequest::new(value_set);
        request.filter = inputs.str("filter").map(str::to_string);
        request.offset = inputs.count("offset")?.unwrap_or(0);
        request.count = inputs.count("count")?;
        request.display_language = inputs.str("displayLanguage").map(str::to_string);
        request.active_only = inputs.bool("activeOnly").unwrap_or(false);
        request.include_designations = inputs.bool("includeDesignations").unwrap_or(false);
        request.include_definition = inputs.bool("includeDefinition").unwrap_or(false);
        request.exclude_not_for_ui = inputs.bool("excludeNotForUI").unwrap_or(false);
        request.exclude_systems = owned("exclude-system");
        request.system_versions = owned("system-version");
        request.force_system_versions = owned("force-system-version");
        request.check_system_versions = owned("check-system-version");
        let sources = engine.terminology_sources();
        let expansion = Terminology::new(&sources).expand(&request)?;
        let identifier = format!("urn:uuid:{}", crate::new_id());
        let timestamp = flint_fhir::datetime::format_instant(engine.clock.now());
        Ok(Output::resource(
            expansion.to_value_set(&identifier, &timestamp),
        ))
    }
}
