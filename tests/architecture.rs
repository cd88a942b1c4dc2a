//! The layering rule of docs/ARCHITECTURE.md, checked on every test run:
//! the core (`src/domain`, `src/service`) and the bottom modules it uses
//! import no web stack and no transport.
// Tests fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::{Path, PathBuf};

const FORBIDDEN: [&str; 6] = [
    "axum",
    "async_graphql",
    "crate::http",
    "crate::graphql",
    "crate::pages",
    "crate::startup",
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn the_core_imports_no_web_stack_and_no_transport() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root.join("domain"), &mut files);
    rust_files(&root.join("service"), &mut files);
    rust_files(&root.join("crypto"), &mut files);
    rust_files(&root.join("db"), &mut files);
    for bottom in [
        "error.rs",
        "state.rs",
        "group_commit.rs",
        "counting_slots.rs",
        "known_groups.rs",
        "templates.rs",
        "clock.rs",
    ] {
        files.push(root.join(bottom));
    }
    assert!(files.len() > 20, "found only {files:?}");
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if FORBIDDEN.iter().any(|name| line.contains(name)) {
                violations.push(format!("{}:{}: {line}", file.display(), number + 1));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
