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

/// Marks a build as written whole.
const COMPLETE: &str = ".complete";

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
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
    let name = base16ct::lower::encode_string(&digest.finalize()[..8]);
    let root = data_dir.join("ui");
    let dir = root.join(&name);
    let io = |p: &Path, e| BundleError::Io(p.to_path_buf(), e);
    match std::fs::symlink_metadata(&root) {
        Ok(m) if !m.is_dir() => {
            let e = std::io::Error::other("not a directory (a link is refused)");
            return Err(io(&root, e));
        }
        Ok(_) => {}
        Err(_) => std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?,
    }
    if !dir.join(COMPLETE).exists() {
        // Written aside, synced, marked complete last and renamed into place: a crash never
        // leaves half a build to serve.
        let tmp = root.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(|e| io(&tmp, e))?;
        for (path, bytes) in &files {
            let target = tmp.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            write_synced(&target, bytes).map_err(|e| io(&target, e))?;
        }
        write_synced(&tmp.join(COMPLETE), b"").map_err(|e| io(&tmp, e))?;
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another process with this data directory unpacked the same build first.
            if !dir.join(COMPLETE).exists() {
                return Err(io(&dir, e));
            }
        }
    }
    // Only builds this code wrote (`<digest>`, `.<digest>.<pid>`) are cleared away.
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let file = e.file_name();
            let entry = file.to_string_lossy();
            let digest = entry
                .trim_start_matches('.')
                .split('.')
                .next()
                .unwrap_or_default();
            let ours = digest.len() == 16 && digest.bytes().all(|b| b.is_ascii_hexdigit());
            if ours
                && entry != name.as_str()
                && !entry.ends_with(&format!(".{}", std::process::id()))
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(dir)
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
