//! `openapi.json` is the exported OpenAPI document of the REST API; this
//! fails when it drifts from what the code produces.
// Tests and benchmarks fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#[test]
fn openapi_json_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let current = customer_registration::http::openapi::pretty_json().unwrap();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &current).expect("write openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == current,
        "openapi.json is out of date with the code. Regenerate it with:\n    UPDATE_OPENAPI=1 cargo test --test export_openapi\n(or: cargo run -- openapi > openapi.json)\nand commit the result."
    );
}
