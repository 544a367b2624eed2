//! Search for Flint. For now: [`index`], the values every SearchParameter that applies to a
//! resource extracts from it (by its FHIRPath expression), typed and normalised so a store can
//! write them as they are.

pub mod index;
mod normalize;

pub use index::{
    extract, CanonicalQuantity, Component, Extracted, IndexValue, ParamType, Registry, SearchParam,
    Skipped, MAX_INDEX_VALUES,
};
pub use normalize::normalize_string;
