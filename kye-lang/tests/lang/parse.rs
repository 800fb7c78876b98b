//! Compiling valid schemas: the extended syntax (inline typed indexes, type-side cardinality,
//! titles, aliases, regexes). The original's conformance schemas are compiled by
//! `conformance.rs`.

use kye_lang::schema::{BinaryOp, ExprKind, Literal};
use kye_lang::{compile, compile_str, Cardinality, Primitive, Schema, SourceMap, Type};

fn ok(text: &str) -> Schema {
    match compile_str("test.kye", text) {
        Ok(s) => s,
        Err(e) => panic!("schema failed to compile:\n{e}"),
    }
}

const POKEMON: &str = r#"
Pokemon(id: Number)(name) {
  name: String
  weight: Number
  height: Number
  base_experience: Number
  types: PokemonType+
  abilities: PokemonAbility+
}
PokemonType(name) { name: String  generation?: String  double_damage_to*: String }
PokemonAbility(name) { name: String  is_main_series?: Boolean  effect?: String }
"#;

#[test]
fn pokemon_schema_compiles_with_inline_index_and_type_side_cardinality() {
    let s = ok(POKEMON);
    let p = s.model("Pokemon").unwrap();
    assert_eq!(p.indexes.len(), 2);
    assert_eq!(
        p.primary_index().map(|ix| ix.edges.clone()),
        Some(vec!["id".to_string()])
    );
    assert_eq!(p.indexes[1].edges, vec!["name"]);
    let id = p.edge("id").unwrap();
    assert_eq!(id.ty, Type::Primitive(Primitive::Number));
    assert_eq!(id.cardinality, Cardinality::One);
    assert_eq!(p.edges[0].name, "id", "inline index edges come first");
    let types = p.edge("types").unwrap();
    assert_eq!(types.ty, Type::Model("PokemonType".into()));
    assert_eq!(types.cardinality, Cardinality::AtLeastOne);
    let t = s.model("PokemonType").unwrap();
    assert_eq!(
        t.edge("generation").unwrap().cardinality,
        Cardinality::Optional
    );
    assert_eq!(
        t.edge("double_damage_to").unwrap().cardinality,
        Cardinality::Many
    );
    assert!(s.warnings().is_empty());
}

#[test]
fn cardinality_markers_on_name_and_type_mean_the_same() {
    let s = ok("M(id) { id!: Number, a?: String, b*: String, c+: String, d: String?, e: String*, f: String+, g: String! }");
    let m = s.model("M").unwrap();
    let card = |n: &str| m.edge(n).unwrap().cardinality;
    assert_eq!(card("id"), Cardinality::One);
    assert_eq!(card("a"), Cardinality::Optional);
    assert_eq!(card("b"), Cardinality::Many);
    assert_eq!(card("c"), Cardinality::AtLeastOne);
    assert_eq!(card("d"), Cardinality::Optional);
    assert_eq!(card("e"), Cardinality::Many);
    assert_eq!(card("f"), Cardinality::AtLeastOne);
    assert_eq!(card("g"), Cardinality::One);
}

#[test]
fn titles_name_the_source_column() {
    let s = ok(r#"User(id) { id "User Id": Number, name "Full Name"?: String }"#);
    let u = s.model("User").unwrap();
    assert_eq!(u.edge("id").unwrap().title.as_deref(), Some("User Id"));
    assert_eq!(u.edge_by_column("Full Name").unwrap().name, "name");
    assert_eq!(u.edge("name").unwrap().cardinality, Cardinality::Optional);
}

#[test]
fn alias_chains_inline_into_constrained_types() {
    let s = ok(
        "Alias1: \"ALIAS_CONST\"\nAlias2: Alias1\nModel(id) { id: Number\n alias_const?: Alias2 }",
    );
    let e = s.model("Model").unwrap().edge("alias_const").unwrap();
    let Type::Constrained {
        base,
        constraint,
        alias,
    } = &e.ty
    else {
        panic!("{:?}", e.ty)
    };
    assert_eq!(*base, Primitive::String);
    assert_eq!(alias.as_deref(), Some("Alias2"));
    let ExprKind::Binary(BinaryOp::Eq, this, lit) = &constraint.kind else {
        panic!("{constraint:?}")
    };
    assert_eq!(this.kind, ExprKind::This);
    assert_eq!(
        lit.kind,
        ExprKind::Literal(Literal::String("ALIAS_CONST".into()))
    );
}

#[test]
fn enums_and_logic_become_constraints() {
    let s = ok("Model(id) { id: Number\n inline_enum: (\"ENUM1\" | \"ENUM2\") & !\"ENUM3\" }");
    let e = s.model("Model").unwrap().edge("inline_enum").unwrap();
    let Type::Constrained {
        constraint,
        alias: None,
        ..
    } = &e.ty
    else {
        panic!("{:?}", e.ty)
    };
    let ExprKind::Binary(BinaryOp::And, l, r) = &constraint.kind else {
        panic!("{constraint:?}")
    };
    assert!(matches!(l.kind, ExprKind::Binary(BinaryOp::Or, _, _)));
    assert!(matches!(
        r.kind,
        ExprKind::Unary(kye_lang::schema::UnaryOp::Not, _)
    ));
}

#[test]
fn regexes_match_the_whole_value() {
    let s = ok("Model(id) { id: Number\n regex: /a+/ }");
    let e = s.model("Model").unwrap().edge("regex").unwrap();
    let Type::Constrained {
        base, constraint, ..
    } = &e.ty
    else {
        panic!()
    };
    assert_eq!(*base, Primitive::String);
    let ExprKind::Binary(BinaryOp::Eq, this, re) = &constraint.kind else {
        panic!("{constraint:?}")
    };
    assert_eq!(this.kind, ExprKind::This);
    let ExprKind::Regex(p) = &re.kind else {
        panic!()
    };
    assert_eq!(p.source, "a+");
    assert!(p.regex.is_match("aaa"));
    assert!(!p.regex.is_match("baaa"));
    assert!(!p.regex.is_match("aab"));
}

#[test]
fn literal_constants_of_every_kind() {
    let s = ok("M(id) { id: Number, a: 42, b: TRUE, c: false, d: -1.5e3, e: \"x\" }");
    let m = s.model("M").unwrap();
    assert_eq!(m.edge("a").unwrap().ty.primitive(), Some(Primitive::Number));
    assert_eq!(
        m.edge("b").unwrap().ty.primitive(),
        Some(Primitive::Boolean)
    );
    assert_eq!(
        m.edge("c").unwrap().ty.primitive(),
        Some(Primitive::Boolean)
    );
    let Type::Constrained { constraint, .. } = &m.edge("d").unwrap().ty else {
        panic!()
    };
    let ExprKind::Binary(_, _, lit) = &constraint.kind else {
        panic!()
    };
    assert_eq!(lit.kind, ExprKind::Literal(Literal::Number(-1500.0)));
}

#[test]
fn assertions_use_ordinary_precedence_and_list_their_edges() {
    let s = ok("M(id) { id: Number, a: Number, b: Number\n assert a + b * 2 >= id & !(a == 0) }");
    let m = s.model("M").unwrap();
    let a = &m.assertions[0];
    assert_eq!(a.edges, vec!["a", "b", "id"]);
    assert_eq!(a.text, "a + b * 2 >= id & !(a == 0)");
    let ExprKind::Binary(BinaryOp::And, cmp, _) = &a.expr.kind else {
        panic!()
    };
    let ExprKind::Binary(BinaryOp::Ge, sum, _) = &cmp.kind else {
        panic!()
    };
    let ExprKind::Binary(BinaryOp::Add, _, prod) = &sum.kind else {
        panic!("{sum:?}")
    };
    assert!(matches!(prod.kind, ExprKind::Binary(BinaryOp::Mul, _, _)));
}

#[test]
fn several_files_make_one_schema() {
    let mut sources = SourceMap::new();
    sources.add(
        "a.kye",
        "Order(id) { id: Number, customer: Customer, status: Status }",
    );
    sources.add(
        "b.kye",
        "Customer(id) { id: Number }\nStatus: \"NEW\" | \"PAID\"",
    );
    let s = compile(sources).unwrap();
    assert_eq!(s.models().len(), 2);
    assert_eq!(
        s.model("Order").unwrap().edge("customer").unwrap().ty,
        Type::Model("Customer".into())
    );
    let loc = s.location(s.model("Customer").unwrap().span);
    assert_eq!(loc, "b.kye:1:1");
}

#[test]
fn comments_become_docs_and_commas_are_optional() {
    let s = ok("# People who log in.\nUser(id)(username) {\n  # Surrogate key.\n  id: Number, username: String # trailing\n}\n");
    let u = s.model("User").unwrap();
    assert_eq!(u.doc.as_deref(), Some("People who log in."));
    assert_eq!(u.edge("id").unwrap().doc.as_deref(), Some("Surrogate key."));
    assert_eq!(u.edge("username").unwrap().doc, None);
}

#[test]
fn composite_indexes_keep_their_order() {
    let s =
        ok("Date(id)(year, month, day) { id: Number, year: Number, month: Number, day: Number }");
    let d = s.model("Date").unwrap();
    assert_eq!(d.indexes[1].edges, vec!["year", "month", "day"]);
    assert!(d.index_named(&["year", "month", "day"]).is_some());
}

#[test]
fn types_and_assertions_print_back_in_kye_syntax() {
    let s = ok(r#"Status: "NEW" | "PAID"
M(id) {
  id: Number, a: Number, b: Number, c: Number
  e: ("ENUM1" | "ENUM2") & !"ENUM3"
  r: /a\/b+/
  st?: Status
  k: Number
  p: M*
  assert a + b * 2 >= id & !(a == 0)
  assert (a + b) * 2 > 0 | a - (b - c) > 0 ^ (a - b) - c > 0
  assert -a < -1.5 & (a > 0 | b > 0) & c != 3
}"#);
    let m = s.model("M").unwrap();
    let ty = |n: &str| m.edge(n).unwrap().ty.to_string();
    assert_eq!(ty("e"), r#"("ENUM1" | "ENUM2") & !"ENUM3""#);
    assert_eq!(ty("r"), r"/a\/b+/");
    assert_eq!(ty("st"), "Status");
    assert_eq!(ty("k"), "Number");
    assert_eq!(ty("p"), "M");
    let printed: Vec<String> = m.assertions.iter().map(|a| a.expr.to_string()).collect();
    assert_eq!(
        printed,
        vec![
            "a + b * 2 >= id & !(a == 0)",
            "(a + b) * 2 > 0 | a - (b - c) > 0 ^ a - b - c > 0",
            "-a < -1.5 & (a > 0 | b > 0) & c != 3",
        ]
    );
    // Printing is faithful: the printed text compiles to the same tree.
    for p in &printed {
        let again = ok(&format!(
            "M(id) {{ id: Number, a: Number, b: Number, c: Number\n assert {p} }}"
        ));
        assert_eq!(&again.model("M").unwrap().assertions[0].expr.to_string(), p);
    }
}
