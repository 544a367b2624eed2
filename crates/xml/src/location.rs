//! Where a problem is: the element path (`Patient.name[0].given[1]`, in JSON property names,
//! as `flint_fhir::validate` reports it) and, in XML input, the line and column.

use flint_fhir::{Error, IssueType};

/// One step of a path: a property name, with the item's index if the property repeats.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Step<'a> {
    pub name: &'a str,
    pub index: Option<usize>,
}

/// The path so far, rendered only when an error needs it.
#[derive(Debug, Default)]
pub(crate) struct Path<'a> {
    steps: Vec<Step<'a>>,
}

impl<'a> Path<'a> {
    pub(crate) fn with_capacity(capacity: usize) -> Path<'a> {
        Path {
            steps: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn push(&mut self, name: &'a str, index: Option<usize>) {
        self.steps.push(Step { name, index });
    }

    pub(crate) fn pop(&mut self) {
        self.steps.pop();
    }

    /// The path with `last` appended, if given.
    pub(crate) fn render(&self, last: Option<&str>) -> String {
        let mut out = String::new();
        for step in &self.steps {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(step.name);
            if let Some(i) = step.index {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
        if let Some(last) = last {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(last);
        }
        out
    }

    /// An error located at this path (or at `last` below it).
    pub(crate) fn error(&self, code: IssueType, last: Option<&str>, message: String) -> Error {
        let path = self.render(last);
        let error = Error::new(code, message);
        if path.is_empty() {
            error
        } else {
            error.at(path)
        }
    }
}

/// The 1-based line and column (in characters) of a byte offset in `input`.
pub(crate) fn line_and_column(input: &[u8], offset: usize) -> (usize, usize) {
    let before = &input[..offset.min(input.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    // Count characters, not bytes: continuation bytes of UTF-8 do not start one.
    let column = 1 + before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count();
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_as_fhirpath() {
        let mut path = Path::default();
        assert_eq!(path.render(None), "");
        assert_eq!(path.render(Some("Patient")), "Patient");
        path.push("Patient", None);
        path.push("name", Some(0));
        path.push("given", Some(1));
        assert_eq!(path.render(None), "Patient.name[0].given[1]");
        path.pop();
        assert_eq!(path.render(Some("family")), "Patient.name[0].family");
    }

    #[test]
    fn positions_count_lines_and_characters() {
        let input = "ab\ncdé\nf".as_bytes();
        assert_eq!(line_and_column(input, 0), (1, 1));
        assert_eq!(line_and_column(input, 2), (1, 3));
        assert_eq!(line_and_column(input, 3), (2, 1));
        assert_eq!(line_and_column(input, 7), (2, 4));
        assert_eq!(line_and_column(input, 8), (3, 1));
        assert_eq!(line_and_column(input, 100), (3, 2));
    }
}
