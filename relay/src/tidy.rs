//! The layering rules of docs/ARCHITECTURE.md, checked on the source until crate boundaries
//! check them (rust-analyzer's "tidy" tests do the same). Test code is not checked.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every production source file: (path under src/, text before its test module).
fn production() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n != "tests.rs" && n != "tidy.rs")
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read source");
            let text = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            let rel = p
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .into_owned();
            (rel, text)
        })
        .collect()
}

/// The `crate::<module>` names a file uses (also inside `use crate::{…}`).
fn crate_modules(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').collect()
        } else {
            vec![rest]
        };
        for n in names {
            let n = n.trim();
            let end = n
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(n.len());
            // A module name, not a type brought in from a nested group.
            if n.starts_with(|c: char| c.is_ascii_lowercase()) {
                found.push(n[..end].to_string());
            }
        }
    }
    found
}

#[test]
fn sql_lives_only_in_the_store() {
    const SQL: [&str; 7] = [
        "\"SELECT ",
        "\"INSERT ",
        "\"DELETE FROM",
        "\"UPDATE ",
        "\"CREATE ",
        "\"REPLACE ",
        "\"WITH ",
    ];
    for (path, text) in production() {
        // The spool runs only its batch's SAVEPOINT plumbing.
        if path.starts_with("store/") || path == "spool.rs" {
            continue;
        }
        for s in SQL {
            assert!(
                !text.contains(s),
                "{path} holds SQL ({s}…); put it in store/"
            );
        }
    }
}

#[test]
fn low_modules_import_only_what_is_below_them() {
    // (a path prefix, the crate modules it may name)
    let rules: [(&str, &[&str]); 9] = [
        ("store/", &["store", "address"]),
        ("spool.rs", &["store"]),
        ("address.rs", &[]),
        ("line_ends.rs", &[]),
        ("secrets.rs", &[]),
        ("dns/", &["dns", "address"]),
        ("identity/", &["identity", "config", "dns", "address"]),
        ("smtp/protocol.rs", &["address"]),
        ("http/csrf.rs", &[]),
    ];
    for (path, text) in production() {
        for (prefix, allowed) in rules {
            if !path.starts_with(prefix) {
                continue;
            }
            for m in crate_modules(&text) {
                assert!(
                    allowed.contains(&m.as_str()),
                    "{path} names crate::{m}, which is above it (allowed: {allowed:?})"
                );
            }
        }
    }
}

#[test]
fn production_code_never_names_dev_tooling() {
    for (path, text) in production() {
        if path.starts_with("dev/") || path == "main.rs" {
            continue;
        }
        assert!(
            !crate_modules(&text).iter().any(|m| m == "dev"),
            "{path} names crate::dev; hand dev tooling over as a trait (dns::ZonePublisher)"
        );
    }
}

#[test]
fn web_sessions_and_access_do_not_import_each_other() {
    let files = production();
    let text = |name: &str| {
        files
            .iter()
            .find(|(p, _)| p == name)
            .map(|(_, t)| t.clone())
            .expect("file exists")
    };
    assert!(!text("http/web_session.rs").contains("access::"));
    assert!(!text("http/csrf.rs").contains("web_session::"));
    assert!(!text("http/csrf.rs").contains("access::"));
}

#[test]
fn the_checker_sees_imports() {
    assert_eq!(
        crate_modules("use crate::{store::X, warming};\nlet a = crate::dns::is_private(ip);"),
        ["store", "warming", "dns"]
    );
}
