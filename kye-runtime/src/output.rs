//! Output formats: how a command (`--format`) or a rendering such as the registry listing
//! prints, for people (text), programs (JSON) or documents (Markdown). A leaf module: it names
//! nothing else of the crate.

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Format {
    /// For people: grouped, colored when the output is a terminal.
    #[default]
    Text,
    /// One JSON document on stdout, for programs.
    Json,
    /// Markdown tables (`list`, `show`, `runs`, `drift`); other commands print text.
    Markdown,
}

impl std::str::FromStr for Format {
    type Err = String;
    /// `text` (or `table`), `json`, `markdown` (or `md`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" | "table" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "markdown" | "md" => Ok(Format::Markdown),
            other => Err(format!(
                "unknown format `{other}`; expected text, json or markdown"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_parse() {
        for (text, format) in [
            ("text", Format::Text),
            ("table", Format::Text),
            ("json", Format::Json),
            ("markdown", Format::Markdown),
            ("md", Format::Markdown),
        ] {
            assert_eq!(text.parse::<Format>(), Ok(format), "{text}");
        }
        assert_eq!(
            "yaml".parse::<Format>(),
            Err("unknown format `yaml`; expected text, json or markdown".to_string())
        );
    }
}
