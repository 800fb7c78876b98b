//! The catalog's sources section (issue 18): every declared source of the binary with its
//! version, hosts, configuration keys and secrets by name (never a value, nor whether one is
//! set: the page shows what a source needs, `kye sources check` whether a machine has it).

use std::fmt::Write as _;

use super::html::esc;
use crate::source::SourceListing;

/// Appends the section to the models page (nothing when no source is declared).
pub(crate) fn section(body: &mut String, sources: &[SourceListing]) {
    if sources.is_empty() {
        return;
    }
    body.push_str(r#"<section class="sources" id="sources" aria-labelledby="h-sources"><h2 id="h-sources">Sources</h2>"#);
    body.push_str(r#"<table><caption>Declared sources</caption><thead><tr><th scope="col">Source</th><th scope="col">Version</th><th scope="col">Hosts</th><th scope="col">Configuration</th><th scope="col">Secrets</th><th scope="col">Probe</th><th scope="col">About</th></tr></thead><tbody>"#);
    for s in sources {
        let config: Vec<String> = s
            .config
            .iter()
            .map(|k| {
                let need = match (&k.default, k.required) {
                    (Some(d), _) => format!("default {d}"),
                    (None, true) => "required".to_string(),
                    (None, false) => "optional".to_string(),
                };
                format!(
                    "<code>{}</code> ({}, {})",
                    esc(&k.name),
                    esc(&k.ty),
                    esc(&need)
                )
            })
            .collect();
        let secrets: Vec<String> = s
            .secrets
            .iter()
            .map(|k| {
                format!(
                    "<code>{}</code> ({}{})",
                    esc(&k.name),
                    esc(&k.sent_as),
                    if k.required { "" } else { ", optional" }
                )
            })
            .collect();
        let _ = write!(
            body,
            "<tr><th scope=\"row\"><code>{}</code></th><td>{} <small>({})</small></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.version),
            esc(&s.krate),
            esc(&s.hosts.join(", ")),
            if config.is_empty() { "none".to_string() } else { config.join("<br>") },
            if secrets.is_empty() { "none".to_string() } else { secrets.join("<br>") },
            s.probe.as_deref().map(|p| format!("<code>{}</code>", esc(p))).unwrap_or_else(|| "none".into()),
            esc(&s.description)
        );
    }
    body.push_str("</tbody></table></section>");
}
