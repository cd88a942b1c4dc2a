//! `schema.graphql` is the exported SDL; this fails when it drifts.
// Tests and benchmarks fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#[test]
fn schema_graphql_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let current = customer_registration::graphql::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &current).expect("write schema.graphql");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == current,
        "schema.graphql is out of date with the code. Regenerate it with:\n    UPDATE_SCHEMA=1 cargo test --test export_sdl\nand commit the result."
    );
}
