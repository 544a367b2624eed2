//! `CodeSystem/$subsumes`: how two codes of one code system relate in its is-a hierarchy
//! (`equivalent`, `subsumes`, `subsumed-by` or `not-subsumed`).

use flint_fhir::{Error, IssueType, Result};

use crate::coding::{Coding, Definition};
use crate::json::str_of;
use crate::parameters;
use crate::{Source, Terminology};

/// The inputs of `$subsumes`.
#[derive(Clone, Debug)]
pub struct SubsumesRequest {
    /// `system` (+ `version`), or the instance invoked on; when absent, the system of the
    /// codings.
    pub code_system: Option<Definition>,
    /// `codeA` or `codingA`.
    pub a: Coding,
    /// `codeB` or `codingB`.
    pub b: Coding,
}

impl SubsumesRequest {
    /// `codeA` and `codeB` in `system` (`url` or `url|version`).
    pub fn codes(system: &str, a: &str, b: &str) -> SubsumesRequest {
        let code = |c: &str| Coding {
            code: Some(c.to_string()),
            ..Default::default()
        };
        SubsumesRequest {
            code_system: Some(Definition::url(system)),
            a: code(a),
            b: code(b),
        }
    }

    /// `codingA` and `codingB`, whose systems name the code system.
    pub fn codings(a: Coding, b: Coding) -> SubsumesRequest {
        SubsumesRequest {
            code_system: None,
            a,
            b,
        }
    }
}

/// The result of `$subsumes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subsumption {
    /// A and B are the same concept.
    Equivalent,
    /// A subsumes B.
    Subsumes,
    /// B subsumes A.
    SubsumedBy,
    /// Neither subsumes the other.
    NotSubsumed,
}

impl Subsumption {
    /// The `outcome` code.
    pub fn code(self) -> &'static str {
        match self {
            Subsumption::Equivalent => "equivalent",
            Subsumption::Subsumes => "subsumes",
            Subsumption::SubsumedBy => "subsumed-by",
            Subsumption::NotSubsumed => "not-subsumed",
        }
    }

    /// The output `Parameters`: `outcome`.
    pub fn to_parameters(self) -> serde_json::Value {
        parameters::resource(vec![parameters::code("outcome", self.code())])
    }
}

impl<S: Source + ?Sized> Terminology<'_, S> {
    /// `CodeSystem/$subsumes`.
    ///
    /// # Errors
    /// Invalid without two codes or without a system, and (code-invalid, 400) for a code not
    /// in the code system; not found for an unknown code system; not supported for codes of
    /// two code systems, or a code system not held in full or whose hierarchy is not is-a.
    pub fn subsumes(&self, request: &SubsumesRequest) -> Result<Subsumption> {
        let definition = match &request.code_system {
            Some(d) => d.clone(),
            None => {
                let system = request
                    .a
                    .system
                    .as_deref()
                    .or(request.b.system.as_deref())
                    .ok_or_else(|| {
                        Error::invalid("$subsumes needs a system, or codings with one")
                    })?;
                let version = request
                    .a
                    .version
                    .as_deref()
                    .or(request.b.version.as_deref());
                Definition::url_version(system, version)
            }
        };
        let system = match &definition {
            Definition::Url { url, .. } => url.clone(),
            Definition::Resource(cs) => str_of(cs, "url").unwrap_or("").to_string(),
        };
        for coding in [&request.a, &request.b] {
            if let Some(other) = coding.system.as_deref().filter(|s| *s != system) {
                return Err(Error::not_supported(format!(
                    "subsumption between codes of the code systems '{other}' and '{system}' is not supported"
                )));
            }
        }
        fn code<'c>(c: &'c Coding, which: &str) -> Result<&'c str> {
            c.code.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| {
                Error::invalid(format!("$subsumes needs code{which} or coding{which}"))
            })
        }
        let (a, b) = (code(&request.a, "A")?, code(&request.b, "B")?);
        let h = self.code_system_of(&definition)?;
        h.require_complete()?;
        h.require_subsumption()?;
        let find = |code: &str| {
            h.find(code).ok_or_else(|| {
                Error::new(
                    IssueType::CodeInvalid,
                    format!("the code '{code}' is not in the code system '{system}'"),
                )
            })
        };
        let (ia, ib) = (find(a)?, find(b)?);
        Ok(if ia == ib {
            Subsumption::Equivalent
        } else if h.subsumes(ia, ib) {
            Subsumption::Subsumes
        } else if h.subsumes(ib, ia) {
            Subsumption::SubsumedBy
        } else {
            Subsumption::NotSubsumed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Core, Resources};
    use serde_json::json;

    fn source() -> Resources {
        Resources::new([
            json!({"resourceType": "CodeSystem", "url": "http://example.org/cs", "content": "complete", "caseSensitive": false,
                   "concept": [{"code": "a", "concept": [{"code": "b", "concept": [{"code": "c"}]}]}, {"code": "d"}]}),
            json!({"resourceType": "CodeSystem", "url": "http://example.org/parts", "content": "complete", "hierarchyMeaning": "part-of",
                   "concept": [{"code": "a", "concept": [{"code": "b"}]}]}),
        ])
    }

    #[test]
    fn outcomes() {
        let s = source();
        let t = Terminology::new(&s);
        let cs = "http://example.org/cs";
        let table = [
            ("a", "a", Subsumption::Equivalent),
            ("a", "C", Subsumption::Subsumes),
            ("c", "a", Subsumption::SubsumedBy),
            ("b", "d", Subsumption::NotSubsumed),
        ];
        for (a, b, want) in table {
            assert_eq!(
                t.subsumes(&SubsumesRequest::codes(cs, a, b)).unwrap(),
                want,
                "{a} {b}"
            );
        }
        let codings = SubsumesRequest::codings(Coding::new(cs, "b"), Coding::new(cs, "c"));
        assert_eq!(t.subsumes(&codings).unwrap(), Subsumption::Subsumes);
        assert_eq!(
            Subsumption::SubsumedBy.to_parameters(),
            json!({"resourceType": "Parameters", "parameter": [{"name": "outcome", "valueCode": "subsumed-by"}]})
        );
    }

    #[test]
    fn bad_inputs() {
        let s = source();
        let t = Terminology::new(&s);
        let cs = "http://example.org/cs";
        assert_eq!(
            t.subsumes(&SubsumesRequest::codes(cs, "a", "zz"))
                .unwrap_err()
                .code(),
            IssueType::CodeInvalid
        );
        assert_eq!(
            t.subsumes(&SubsumesRequest::codes(cs, "a", ""))
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            t.subsumes(&SubsumesRequest::codes("http://example.org/none", "a", "b"))
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            t.subsumes(&SubsumesRequest::codes(
                "http://example.org/parts",
                "a",
                "b"
            ))
            .unwrap_err()
            .code(),
            IssueType::NotSupported
        );
        let mixed = SubsumesRequest::codings(
            Coding::new(cs, "a"),
            Coding::new("http://example.org/parts", "a"),
        );
        assert_eq!(
            t.subsumes(&mixed).unwrap_err().code(),
            IssueType::NotSupported
        );
        let bare = SubsumesRequest::codings(Coding::default(), Coding::default());
        assert_eq!(t.subsumes(&bare).unwrap_err().status(), 400);
    }

    #[test]
    fn core_hierarchies() {
        let t = Terminology::new(&Core);
        let act = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
        assert_eq!(
            t.subsumes(&SubsumesRequest::codes(act, "_ActAccountCode", "CC"))
                .unwrap(),
            Subsumption::Subsumes
        );
        assert_eq!(
            t.subsumes(&SubsumesRequest::codes(act, "AE", "CC"))
                .unwrap(),
            Subsumption::SubsumedBy
        );
        assert_eq!(
            t.subsumes(&SubsumesRequest::codes(act, "AE", "CASH"))
                .unwrap(),
            Subsumption::NotSubsumed
        );
        let status = "http://hl7.org/fhir/observation-status";
        assert_eq!(
            t.subsumes(&SubsumesRequest::codes(status, "amended", "corrected"))
                .unwrap(),
            Subsumption::Subsumes
        );
        let snomed = t
            .subsumes(&SubsumesRequest::codes("http://snomed.info/sct", "1", "2"))
            .unwrap_err();
        assert_eq!(snomed.code(), IssueType::NotSupported);
    }
}
