//! Installs the pinned GraphiQL bundles (src/pages/graphiql/package-lock.json)
//! from the npm registry with `npm ci`, into OUT_DIR, so the binary embeds
//! them and the playground loads nothing from the internet. No third-party
//! bundle is committed to the repository.
// A build script reports failure by panicking.
#![allow(clippy::expect_used)]
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

const BUNDLES: [(&str, &str); 4] = [
    ("graphiql/graphiql.min.js", "graphiql.min.js"),
    ("graphiql/graphiql.min.css", "graphiql.min.css"),
    (
        "react/umd/react.production.min.js",
        "react.production.min.js",
    ),
    (
        "react-dom/umd/react-dom.production.min.js",
        "react-dom.production.min.js",
    ),
];

fn main() {
    let source = Path::new("src/pages/graphiql");
    println!("cargo:rerun-if-changed=src/pages/graphiql/package.json");
    println!("cargo:rerun-if-changed=src/pages/graphiql/package-lock.json");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let npm_dir = out.join("graphiql-npm");
    let assets = out.join("graphiql");
    fs::create_dir_all(&npm_dir).expect("create npm dir");
    fs::create_dir_all(&assets).expect("create asset dir");
    for file in ["package.json", "package-lock.json"] {
        fs::copy(source.join(file), npm_dir.join(file)).expect("copy npm manifest");
    }
    let installed = BUNDLES
        .iter()
        .all(|(from, _)| npm_dir.join("node_modules").join(from).exists())
        || install(&npm_dir);
    for (from, to) in BUNDLES {
        let bundle = npm_dir.join("node_modules").join(from);
        if installed && bundle.exists() {
            fs::copy(&bundle, assets.join(to)).expect("copy bundle");
        } else {
            fs::write(assets.join(to), b"").expect("write placeholder");
        }
    }
    let state = if installed { "embedded" } else { "missing" };
    println!("cargo:rustc-env=GRAPHIQL_ASSETS={state}");
}

/// `npm ci` verifies every package against the lock file's integrity hashes.
fn install(dir: &Path) -> bool {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let status = Command::new(npm)
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
        ])
        .current_dir(dir)
        .status();
    match status {
        Ok(status) if status.success() => true,
        outcome => {
            println!(
                "cargo:warning=GraphiQL assets could not be installed with npm ({outcome:?}); GET /graphql will explain how to fix it. Everything else works."
            );
            false
        }
    }
}
