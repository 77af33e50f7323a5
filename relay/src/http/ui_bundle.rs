//! The web UI built into the `atmos` binary: one artifact to install. The binary embeds the
//! Trunk build it was compiled beside (`dist/`, when present); at start the relay writes it
//! once into `<data_dir>/ui/<digest>/` and serves that directory like any other build, so the
//! file serving, precompression and the CSP's script hashes have one code path.

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The files of a UI build: (path relative to the build's root, bytes).
pub trait UiBundle: Send + Sync + std::fmt::Debug {
    fn files(&self) -> Vec<(String, Cow<'static, [u8]>)>;
}

/// Why the bundle could not be written out.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the embedded UI has no index.html")]
    NoIndex,
    #[error("embedded UI path {0:?} leaves its directory")]
    BadPath(String),
    #[error("writing the embedded UI to {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Writes `bundle` under `<data_dir>/ui/` (once per distinct build) and returns its directory.
/// Older builds there are removed.
pub fn unpack(bundle: &dyn UiBundle, data_dir: &Path) -> Result<PathBuf, BundleError> {
    let mut files = bundle.files();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    if !files.iter().any(|(p, _)| p == "index.html") {
        return Err(BundleError::NoIndex);
    }
    let mut digest = Sha256::new();
    for (path, bytes) in &files {
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(BundleError::BadPath(path.clone()));
        }
        digest.update((path.len() as u64).to_le_bytes());
        digest.update(path.as_bytes());
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(bytes);
    }
    let name = hex(&digest.finalize()[..8]);
    let root = data_dir.join("ui");
    let dir = root.join(&name);
    let io = |p: &Path, e| BundleError::Io(p.to_path_buf(), e);
    if !dir.join("index.html").exists() {
        // Written aside and renamed into place, so a crash never leaves half a build to serve.
        let tmp = root.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        for (path, bytes) in &files {
            let target = tmp.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            std::fs::write(&target, bytes).map_err(|e| io(&target, e))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
    }
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            if e.file_name() != name.as_str() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(dir)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Files(Vec<(&'static str, &'static [u8])>);

    impl UiBundle for Files {
        fn files(&self) -> Vec<(String, Cow<'static, [u8]>)> {
            self.0
                .iter()
                .map(|(p, b)| (p.to_string(), Cow::Borrowed(*b)))
                .collect()
        }
    }

    #[test]
    fn a_build_is_written_once_and_replaces_the_last() {
        let data = tempfile::tempdir().expect("tempdir");
        let one = Files(vec![("index.html", b"<p>one"), ("app.js", b"1")]);
        let dir = unpack(&one, data.path()).expect("unpack");
        assert_eq!(
            std::fs::read(dir.join("index.html")).expect("index"),
            b"<p>one"
        );
        assert_eq!(unpack(&one, data.path()).expect("again"), dir);
        let two = Files(vec![("index.html", b"<p>two")]);
        let dir2 = unpack(&two, data.path()).expect("unpack two");
        assert_ne!(dir, dir2);
        assert!(!dir.exists(), "the older build is removed");
        assert_eq!(
            std::fs::read_dir(data.path().join("ui"))
                .expect("ui")
                .count(),
            1
        );
    }

    #[test]
    fn paths_stay_inside_and_an_index_is_required() {
        let data = tempfile::tempdir().expect("tempdir");
        let escape = Files(vec![("index.html", b"x"), ("../evil", b"x")]);
        assert!(matches!(
            unpack(&escape, data.path()),
            Err(BundleError::BadPath(_))
        ));
        let none = Files(vec![("app.js", b"x")]);
        assert!(matches!(
            unpack(&none, data.path()),
            Err(BundleError::NoIndex)
        ));
    }
}
