//! What `kye::models!` generates, checked at run time: field names and types, serde renames,
//! enums for literal sets, `Option`/`Vec` for cardinalities, boxed recursion, integer indexes,
//! typed request builders and the `Model` trait.

use kye::Model;
use serde_json::json;

kye::models!("tests/schemas/shop.kye");

fn product() -> Product {
    Product {
        sku: "A-1".into(),
        product_id: 7,
        name: "Lamp".into(),
        price: 19.5,
        color: Some(Color::DarkBlue),
        size: ProductSize::M,
        tags: vec!["home".into()],
        in_stock: true,
        type_: "light".into(),
        maker: Some(Maker {
            name: "Acme".into(),
            founded: None,
        }),
        parts: vec![],
        variant_of: None,
    }
}

#[test]
fn fields_serialize_under_their_edge_names() {
    let v = serde_json::to_value(product()).unwrap();
    assert_eq!(
        v,
        json!({
            "sku": "A-1", "productId": 7, "name": "Lamp", "price": 19.5, "color": "dark blue",
            "size": "M", "tags": ["home"], "inStock": true, "type": "light",
            "maker": {"name": "Acme", "founded": null}, "parts": [], "variantOf": null
        })
    );
    let back: Product = serde_json::from_value(v).unwrap();
    assert_eq!(back, product());
}

#[test]
fn absent_optional_and_repeated_edges_default_and_index_numbers_accept_integral_floats() {
    let p: Product = serde_json::from_value(json!({
        "sku": "B", "productId": 8.0, "name": "Chair", "price": 30, "size": "L",
        "inStock": false, "type": "seat"
    }))
    .unwrap();
    assert_eq!(p.product_id, 8);
    assert_eq!(p.price, 30.0);
    assert_eq!(p.color, None);
    assert!(p.tags.is_empty() && p.parts.is_empty());
    let err = serde_json::from_value::<Product>(json!({
        "sku": "B", "productId": 8.5, "name": "Chair", "price": 30, "size": "L",
        "inStock": false, "type": "seat"
    }))
    .unwrap_err();
    assert!(
        err.to_string().contains("expected an integer, found 8.5"),
        "{err}"
    );
    let err = serde_json::from_value::<Product>(json!({
        "sku": "B", "productId": 8, "name": "Chair", "price": 30, "size": "XL",
        "inStock": false, "type": "seat"
    }))
    .unwrap_err();
    assert!(err.to_string().contains("unknown variant `XL`"), "{err}");
}

#[test]
fn literal_sets_become_matchable_enums() {
    let all = [Color::Red, Color::DarkBlue, Color::V1stChoice];
    let names: Vec<&str> = all.iter().map(Color::as_str).collect();
    assert_eq!(names, ["red", "dark blue", "1st choice"]);
    assert_eq!(ProductSize::S.to_string(), "S");
    match product().size {
        ProductSize::S | ProductSize::L => panic!("wrong size"),
        ProductSize::M => {}
    }
}

#[test]
fn recursive_single_edges_are_boxed() {
    let mut p = product();
    p.variant_of = Some(Box::new(product()));
    p.parts.push(product());
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["variantOf"]["sku"], "A-1");
    assert_eq!(v["parts"][0]["name"], "Lamp");
}

#[test]
fn the_model_trait_exposes_name_indexes_and_schema() {
    assert_eq!(Product::NAME, "Product");
    assert_eq!(Product::INDEXES, &[&["sku"][..], &["productId"][..]]);
    assert_eq!(Sale::INDEXES, &[&["year", "month", "day"][..]]);
    let def = Product::definition();
    assert_eq!(def.edges.len(), 12);
    assert_eq!(def.doc.as_deref(), Some("A product in a shop."));
    assert!(
        std::ptr::eq(Product::schema(), Maker::schema()),
        "one schema per models! call"
    );
    assert_eq!(
        Product::schema().location(def.span),
        "tests/schemas/shop.kye:7:1"
    );
    // Generated records validate against their own schema.
    let report = kye::lang::validate::validate_record(
        Product::schema(),
        "Product",
        &serde_json::to_value(product()).unwrap(),
    );
    assert!(report.is_valid(), "{:?}", report.errors);
}

#[test]
fn typed_builders_make_requests() {
    assert_eq!(Product::by_sku("A-1").to_string(), "Product.sku = \"A-1\"");
    assert_eq!(
        Product::by_product_id(7).to_string(),
        "Product.productId = 7"
    );
    assert_eq!(
        Sale::by_year_month_day(2024, 1, 31).to_string(),
        "Sale(year, month, day) = (2024, 1, 31)"
    );
    assert_eq!(Maker::by_name(String::from("Acme")).model(), "Maker");
}

#[test]
fn models_are_registered_for_the_runtime() {
    let r = crate::registry_of(module_path!()).unwrap();
    let names: Vec<&str> = r.models().map(|m| m.name()).collect();
    assert_eq!(names, ["Line", "Maker", "Product", "Receipt", "Sale"]);
    assert_eq!(r.fetchers().len(), 0);
}

/// A model without an index that an edge nests is a value object: it gets a struct like any
/// model, no index and no request builder, and `#[kye::get]` on it would fail to compile
/// naming it as a value object (the text below follows "its indexes are").
#[test]
fn a_value_object_has_a_struct_and_no_index() {
    assert!(Line::INDEXES.is_empty());
    assert!(
        Line::INDEX_LIST.starts_with("none: `Line` is a value object"),
        "{}",
        Line::INDEX_LIST
    );
    assert!(Line::definition().is_value_object());
    let r = Receipt {
        id: 1,
        lines: vec![Line {
            sku: "A-1".into(),
            qty: 2.0,
        }],
    };
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v, json!({"id": 1, "lines": [{"sku": "A-1", "qty": 2.0}]}));
    let report = kye::lang::validate::validate_record(Receipt::schema(), "Receipt", &v);
    assert!(report.is_valid(), "{:?}", report.errors);
}
