//! The lineage graph as an SVG drawn here: a box per model the viewer may read, a solid arrow
//! for a field referencing another model, a dashed one from each input of a transformer to
//! its output. Models are laid out in rows of [`COLUMNS`]; no script, no fonts from outside.

use std::fmt::Write as _;

use super::html::{esc, url};
use crate::listing::Listing;

const COLUMNS: usize = 3;
const W: i64 = 180;
const H: i64 = 44;
const GAP_X: i64 = 90;
const GAP_Y: i64 = 80;
const MARGIN: i64 = 30;

/// The graph of the models `reads` allows.
pub(crate) fn svg(listing: &Listing, reads: &dyn Fn(&str) -> bool) -> String {
    let models: Vec<&str> = listing
        .models
        .iter()
        .map(|m| m.name.as_str())
        .filter(|m| reads(m))
        .collect();
    let at = |name: &str| -> Option<(i64, i64)> {
        let i = models.iter().position(|m| *m == name)? as i64;
        let (col, row) = (i % COLUMNS as i64, i / COLUMNS as i64);
        Some((MARGIN + col * (W + GAP_X), MARGIN + row * (H + GAP_Y)))
    };
    let rows = models.len().div_ceil(COLUMNS).max(1) as i64;
    let cols = models.len().clamp(1, COLUMNS) as i64;
    let width = 2 * MARGIN + cols * W + (cols - 1) * GAP_X;
    let height = 2 * MARGIN + rows * H + (rows - 1) * GAP_Y;
    let mut out = format!(
        r#"<svg id="lineage" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-labelledby="lineage-title"><title id="lineage-title">Lineage: {n} model(s), references and transformer inputs</title><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/></marker></defs>"#,
        n = models.len()
    );
    // Edges first, boxes over them.
    let mut drawn = std::collections::BTreeSet::new();
    for m in listing.models.iter().filter(|m| reads(&m.name)) {
        for e in &m.edges {
            if e.ty != m.name
                && models.contains(&e.ty.as_str())
                && drawn.insert((m.name.clone(), e.ty.clone(), "ref"))
            {
                if let (Some(a), Some(b)) = (at(&m.name), at(&e.ty)) {
                    line(
                        &mut out,
                        a,
                        b,
                        "reference",
                        &format!("{}.{} references {}", m.name, e.name, e.ty),
                    );
                }
            }
        }
    }
    for t in &listing.transformers {
        if !reads(&t.output) {
            continue;
        }
        for input in t.inputs.iter().filter(|i| reads(i)) {
            if let (Some(a), Some(b)) = (at(input), at(&t.output)) {
                line(
                    &mut out,
                    a,
                    b,
                    "transform",
                    &format!("transformer {} reads {input} into {}", t.function, t.output),
                );
            }
        }
    }
    for m in &models {
        let Some((x, y)) = at(m) else { continue };
        let _ = write!(
            out,
            r##"<a href="/#model-{href}" class="node" data-model="{name}"><rect x="{x}" y="{y}" width="{W}" height="{H}" rx="6"/><text x="{tx}" y="{ty}" text-anchor="middle">{name}</text></a>"##,
            href = url(m),
            name = esc(m),
            tx = x + W / 2,
            ty = y + H / 2 + 5,
        );
    }
    out.push_str("</svg>");
    out
}

/// An arrow from box `a` to box `b`, border to border.
fn line(out: &mut String, a: (i64, i64), b: (i64, i64), class: &str, title: &str) {
    let (ax, ay) = (a.0 + W / 2, a.1 + H / 2);
    let (bx, by) = (b.0 + W / 2, b.1 + H / 2);
    // Where the segment leaves box a and enters box b.
    let clip = |(cx, cy): (i64, i64), (dx, dy): (i64, i64)| -> (f64, f64) {
        let (dx, dy) = ((dx - cx) as f64, (dy - cy) as f64);
        let sx = if dx == 0.0 {
            f64::INFINITY
        } else {
            (W as f64 / 2.0) / dx.abs()
        };
        let sy = if dy == 0.0 {
            f64::INFINITY
        } else {
            (H as f64 / 2.0) / dy.abs()
        };
        let s = sx.min(sy).min(1.0);
        (cx as f64 + dx * s, cy as f64 + dy * s)
    };
    let (x1, y1) = clip((ax, ay), (bx, by));
    let (x2, y2) = clip((bx, by), (ax, ay));
    let _ = write!(
        out,
        r#"<line class="{class}" x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" marker-end="url(#arrow)"><title>{}</title></line>"#,
        esc(title)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::{EdgeListing, ModelListing};

    fn model(name: &str, refs: &[&str]) -> ModelListing {
        ModelListing {
            name: name.into(),
            indexes: vec![vec!["id".into()]],
            location: "x.kye:1:1".into(),
            doc: None,
            edges: refs
                .iter()
                .map(|r| EdgeListing {
                    name: r.to_lowercase(),
                    ty: r.to_string(),
                    cardinality: "+".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_node_per_readable_model_and_no_edge_to_a_hidden_one() {
        let listing = Listing {
            models: vec![model("A", &["B", "C"]), model("B", &[]), model("C", &[])],
            fetchers: vec![],
            listers: vec![],
            transformers: vec![],
            sources: vec![],
            warnings: vec![],
        };
        let all = svg(&listing, &|_| true);
        assert_eq!(all.matches(r#"class="node""#).count(), 3, "{all}");
        assert_eq!(
            all.matches(r#"<line class="reference""#).count(),
            2,
            "{all}"
        );
        let some = svg(&listing, &|m| m != "C");
        assert_eq!(some.matches(r#"class="node""#).count(), 2, "{some}");
        assert_eq!(some.matches("<line").count(), 1, "{some}");
        assert!(
            !some.contains(r#"data-model="C""#) && !some.contains("references C"),
            "{some}"
        );
    }
}
