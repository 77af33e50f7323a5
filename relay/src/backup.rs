//! `atmos backup`: a consistent copy of a running relay's state — both SQLite stores (the queue,
//! message bodies, members, keys sealed with the KEK; the labeler's labels and signing key)
//! through SQLite's online backup API, and the key-encryption key file when the KEK lives in
//! `data_dir`. Restoring is copying the files back into an empty `data_dir` before start.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The stores under `data_dir`, in the order they are copied.
pub const STORES: [&str; 2] = ["atmos.sqlite", "labeler.sqlite"];

/// Pages copied per step; between steps the writer may take the lock, so a backup never stalls
/// the relay for longer than one step.
const PAGES_PER_STEP: std::ffi::c_int = 1024;
const PAUSE: Duration = Duration::from_millis(5);

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} exists and is not empty: back up into a new directory")]
    NotEmpty(PathBuf),
    #[error("no store in {0}: is this the relay's data_dir?")]
    NoStore(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// One copied file.
#[derive(Debug, serde::Serialize)]
pub struct Copied {
    pub file: String,
    pub bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sqlite(path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// Copies the state of `data_dir` into `dest` (created; it must not hold anything yet).
pub fn backup(data_dir: &Path, dest: &Path) -> Result<Vec<Copied>, BackupError> {
    if dest.exists() && std::fs::read_dir(dest).map_err(io(dest))?.next().is_some() {
        return Err(BackupError::NotEmpty(dest.to_path_buf()));
    }
    if !data_dir.join(STORES[0]).exists() {
        return Err(BackupError::NoStore(data_dir.to_path_buf()));
    }
    create_private_dir(dest)?;
    let mut copied = Vec::new();
    for name in STORES {
        let from = data_dir.join(name);
        if !from.exists() {
            continue;
        }
        let to = dest.join(name);
        let source = rusqlite::Connection::open_with_flags(
            &from,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite(&from))?;
        // A busy writer holds the lock briefly; wait for it rather than fail a step.
        source
            .busy_timeout(Duration::from_secs(10))
            .map_err(sqlite(&from))?;
        let mut target = rusqlite::Connection::open(&to).map_err(sqlite(&to))?;
        {
            let run = rusqlite::backup::Backup::new(&source, &mut target).map_err(sqlite(&to))?;
            run.run_to_completion(PAGES_PER_STEP, PAUSE, None)
                .map_err(sqlite(&from))?;
        }
        // One self-contained file: no -wal beside it.
        target
            .pragma_update(None, "journal_mode", "DELETE")
            .map_err(sqlite(&to))?;
        drop(target);
        set_private(&to)?;
        copied.push(Copied {
            file: name.to_string(),
            bytes: std::fs::metadata(&to).map_err(io(&to))?.len(),
        });
    }
    let kek = data_dir.join("kek");
    if kek.exists() {
        let to = dest.join("kek");
        std::fs::copy(&kek, &to).map_err(io(&kek))?;
        set_private(&to)?;
        copied.push(Copied {
            file: "kek".into(),
            bytes: std::fs::metadata(&to).map_err(io(&to))?.len(),
        });
    }
    Ok(copied)
}

fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

/// Backups hold sealed keys and the KEK that opens them: owner-only, like `data_dir`.
fn set_private(path: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_a_store_being_written_and_refuses_a_used_destination() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data");
        let conn = rusqlite::Connection::open(data.join("atmos.sqlite")).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2);",
        )
        .expect("schema");
        std::fs::write(data.join("kek"), [7u8; 32]).expect("kek");
        let dest = dir.path().join("backup");
        let copied = backup(&data, &dest).expect("backup");
        assert_eq!(
            copied.iter().map(|c| c.file.as_str()).collect::<Vec<_>>(),
            ["atmos.sqlite", "kek"]
        );
        let copy = rusqlite::Connection::open(dest.join("atmos.sqlite")).expect("copy");
        let n: i64 = copy
            .query_row("SELECT sum(n) FROM t", [], |r| r.get(0))
            .expect("rows");
        assert_eq!(n, 3, "committed rows, WAL included");
        assert!(matches!(
            backup(&data, &dest),
            Err(BackupError::NotEmpty(_))
        ));
        assert!(matches!(
            backup(&dir.path().join("nowhere"), &dir.path().join("b2")),
            Err(BackupError::NoStore(_))
        ));
    }
}
