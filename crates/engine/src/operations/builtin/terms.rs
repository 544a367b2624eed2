//! What the terminology operations share: the CodeSystem, ValueSet or ConceptMap a call is
//! about, and the coded value it asks about, read from the inputs the R4 definitions name.

use flint_fhir::{Error, Result};
use flint_terminology::{Coding, Definition};

use crate::operations::{Call, Level};

/// The resource the call is about: the instance it is invoked on, else the resource given
/// as `resource_input`, else the canonical URL `url_input` (with `version_input`).
///
/// # Errors
/// The instance is deleted (410); a resource input that is not JSON.
pub(crate) fn subject(
    call: &mut Call<'_>,
    url_input: &str,
    resource_input: &str,
    version_input: &str,
) -> Result<Option<Definition>> {
    if call.target.level == Level::Instance {
        return Ok(Some(Definition::resource(call.target.resource()?)));
    }
    if let Some(resource) = call.inputs.take_resource(resource_input) {
        return Ok(Some(Definition::resource(resource)));
    }
    Ok(call
        .inputs
        .str(url_input)
        .map(|url| Definition::url_version(url, call.inputs.str(version_input))))
}

/// The names of the inputs that carry one coded value.
pub(crate) struct CodedInputs<'n> {
    pub code: &'n str,
    pub system: Option<&'n str>,
    pub version: Option<&'n str>,
    pub display: Option<&'n str>,
    pub coding: &'n str,
}

/// The coded value a call asks about: its `coding`, else its `code` (with the system,
/// version and display inputs). Both at once is ambiguous.
///
/// # Errors
/// Both forms given (400); a malformed Coding (400).
pub(crate) fn coded(call: &Call<'_>, names: &CodedInputs<'_>) -> Result<Option<Coding>> {
    let inputs = &call.inputs;
    let coding = inputs.value(names.coding);
    let code = inputs.str(names.code);
    match (coding, code) {
        (Some(_), Some(_)) => Err(Error::invalid(format!(
            "give either '{}' or '{}', not both",
            names.code, names.coding
        ))
        .at(names.coding.to_string())),
        (Some(coding), None) => Coding::from_json(coding)
            .map(Some)
            .map_err(|e| e.at(names.coding.to_string())),
        (None, Some(code)) => {
            let mut coding = Coding {
                code: Some(code.to_string()),
                ..Coding::default()
            };
            coding.system = names.system.and_then(|n| inputs.str(n)).map(str::to_string);
            coding.version = names
                .version
                .and_then(|n| inputs.str(n))
                .map(str::to_string);
            coding.display = names
                .display
                .and_then(|n| inputs.str(n))
                .map(str::to_string);
            Ok(Some(coding))
        }
        (None, None) => Ok(None),
    }
}

/// The codings a call asks about (its `code`, `coding` or `codeableConcept`), and whether
/// they came as a CodeableConcept.
///
/// # Errors
/// More than one form, or none (400); a malformed value (400).
pub(crate) fn codings(
    call: &Call<'_>,
    names: &CodedInputs<'_>,
    operation: &str,
) -> Result<(Vec<Coding>, bool)> {
    let concept = call.inputs.value("codeableConcept");
    let single = coded(call, names)?;
    match (concept, single) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "give one of 'code', 'coding' or 'codeableConcept'",
        )
        .at("codeableConcept")),
        (Some(concept), None) => Ok((
            Coding::from_codeable_concept(concept).map_err(|e| e.at("codeableConcept"))?,
            true,
        )),
        (None, Some(coding)) => Ok((vec![coding], false)),
        (None, None) => Err(Error::invalid(format!(
            "{operation} needs 'code', 'coding' or 'codeableConcept'"
        ))
        .at("code")),
    }
}

/// Refuses inputs of the definition this server does not act on, rather than ignoring them.
///
/// # Errors
/// The first such input given (not supported, naming it).
pub(crate) fn refuse_unsupported(call: &Call<'_>, names: &[&str]) -> Result<()> {
    for name in names {
        if call.inputs.get(name).is_some() {
            return Err(Error::not_supported(format!(
                "the input '{name}' is not supported by this server"
            ))
            .at((*name).to_string()));
        }
    }
    Ok(())
}

/// The `parameter` entries of a `Parameters` resource the terminology crate built.
pub(crate) fn entries(parameters: serde_json::Value) -> Vec<serde_json::Value> {
    match parameters {
        serde_json::Value::Object(mut o) => match o.remove("parameter") {
            Some(serde_json::Value::Array(entries)) => entries,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}
