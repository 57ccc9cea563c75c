//! Configuration problems: every one found in a run, each with the key path, the offending
//! value, the reason and (when the value came from a file) the line and column.
//!
//! `roost check` prints [`ConfigErrors`] as-is, one problem per line, in the familiar
//! `file:line:col: message` shape editors and CI logs understand.

use std::fmt;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the value is in the document, e.g. `pools.default.queueLength` or
    /// `sites[0].bindings[1].listen`. Empty for problems about the whole document
    /// (unreadable file, YAML syntax).
    pub path: String,
    /// The offending value as it is displayed (strings quoted, numbers bare), if any.
    pub value: Option<String>,
    pub message: String,
    /// 1-based line and column in `file`, when the key path exists in the YAML text.
    pub line_col: Option<(usize, usize)>,
    /// The file name (or `<embedded default>`), or the environment variable the value came from.
    pub file: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.line_col {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            f.write_str(&self.path)?;
            if let Some(v) = &self.value {
                write!(f, " = {v}")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found while loading one configuration (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub problems: Vec<Problem>,
}

impl ConfigErrors {
    /// A single problem about the whole document (e.g. the file cannot be read).
    pub fn single(file: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors {
            problems: vec![Problem {
                path: String::new(),
                value: None,
                message: message.into(),
                line_col: None,
                file: file.into(),
            }],
        }
    }

    /// Whether any problem mentions `path` exactly (handy in tests and tooling).
    pub fn find(&self, path: &str) -> Option<&Problem> {
        self.problems.iter().find(|p| p.path == path)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_position_value_and_path() {
        let p = Problem {
            path: "pools.api.queueTimeout".into(),
            value: Some("\"10x\"".into()),
            message: "not a duration (write 90s, 5m, 29h)".into(),
            line_col: Some((20, 18)),
            file: "proxy.yaml".into(),
        };
        assert_eq!(
            p.to_string(),
            "proxy.yaml:20:18: pools.api.queueTimeout = \"10x\": not a duration (write 90s, 5m, 29h)"
        );
    }

    #[test]
    fn display_without_position_or_path() {
        let e = ConfigErrors::single("x.yaml", "cannot read: gone");
        assert_eq!(e.to_string(), "x.yaml: cannot read: gone");
    }
}
