//! Helpers shared by the feed and book tests (`mod feed_support;`).

use std::path::PathBuf;

/// The captures: `$TICKRING_FIXTURES`, else `../shared/fixtures` beside the crate.
pub fn fixtures() -> PathBuf {
    match std::env::var_os("TICKRING_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

/// The non-empty lines of a capture file (path under [`fixtures`]).
#[allow(dead_code)] // not every test file reads lines
pub fn lines(file: &str) -> Vec<String> {
    let path = fixtures().join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}
