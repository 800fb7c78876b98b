//! HTML built with plain Rust: [`esc`] escapes every text and attribute value that did not
//! come from this module, and [`layout`] wraps a page's body in the shared shell (header,
//! navigation, the stylesheet and script served by kye itself).

use std::fmt::Write as _;

/// `text` safe inside an element or a quoted attribute: `& < > " '` become entities.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as a URL path segment or query value (RFC 3986 unreserved kept, the rest %XX).
pub(crate) fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The navigation entries: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/", "Models"),
    ("/lineage", "Lineage"),
    ("/runs", "Runs"),
    ("/rejects", "Rejects"),
    ("/drift", "Drift"),
];

/// A whole page: `title` (escaped here), the current navigation path, the signed-in token's
/// name and CSRF token for the logout form (`None` on the login page), and `body` (HTML).
pub(crate) fn layout(title: &str, current: &str, who: Option<(&str, &str)>, body: &str) -> String {
    let mut nav = String::new();
    if who.is_some() {
        nav.push_str(r#"<nav aria-label="Catalog"><ul>"#);
        for (path, label) in NAV {
            let here = if *path == current {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(nav, r#"<li><a href="{path}"{here}>{label}</a></li>"#);
        }
        nav.push_str("</ul></nav>");
    }
    let signed = match who {
        Some((name, csrf)) => format!(
            r#"<form class="logout" method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><span>Signed in as <strong>{}</strong></span> <button type="submit">Log out</button></form>"#,
            esc(csrf),
            esc(name)
        ),
        None => String::new(),
    };
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · kye catalog</title>
<link rel="stylesheet" href="/assets/catalog.css">
<link rel="icon" href="data:,">
<script src="/assets/catalog.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header><span class="brand">kye catalog</span>{nav}{signed}</header>
<main id="main" tabindex="-1">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"##,
        title = esc(title),
    )
}

/// A JSON value as compact text, cut to `max` characters.
pub(crate) fn json_text(value: &serde_json::Value, max: usize) -> String {
    super::super::audit::cut(&value.to_string(), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            esc(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(url("a b/ü?&="), "a%20b%2F%C3%BC%3F%26%3D");
        let page = layout("<T>", "/", Some(("a\"b", "c")), "<p>x</p>");
        assert!(page.contains("&lt;T&gt; · kye catalog") && page.contains("a&quot;b"));
        assert!(page.contains(r#"<a href="/" aria-current="page">"#));
    }
}
