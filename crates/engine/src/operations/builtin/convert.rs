//! `$convert` (R4 `Resource-convert`, system level): a resource in one format answered in
//! another. The HTTP adapter reads the body in the format its `Content-Type` names (JSON or
//! XML) and writes the answer in the one `Accept` or `_format` asks for, so the operation
//! itself checks the resource and hands it back, bare.

use std::sync::Arc;

use flint_fhir::{Error, Result};
use flint_store::Store;
use serde_json::json;

use crate::operations::{Call, Definition, Operation, Output};
use crate::request::{Payload, Response};
use crate::Engine;

pub(crate) struct Convert;

impl<S: Store> Operation<S> for Convert {
    fn definition(&self) -> Definition {
        Definition::r4("Resource-convert", |d| d["affectsState"] = json!(false))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let resource = call.inputs.take_resource("input").ok_or_else(|| {
            Error::invalid("$convert needs the resource to convert, as the body").at("input")
        })?;
        let rt = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // What cannot be written in the other format is refused here, not half-converted.
        engine.check_resource(&rt, &resource)?;
        Ok(Output::Response(Response::new(
            200,
            Payload::Value(resource),
        )))
    }
}
