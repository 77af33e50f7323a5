//! The web UI for `atmos dev`: when the relay runs from a source checkout and the UI build is
//! missing or older than its sources, it is built with Trunk first — installing Trunk,
//! wasm-bindgen-cli and the wasm32 target on the first run (about 15 minutes on two cores;
//! later builds take seconds).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The source checkout this binary was built from, if it is still there.
pub fn workspace() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    root.join("Trunk.toml").exists().then_some(root)
}

/// The newest modification time under `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut latest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest(&path)
        } else {
            entry.metadata().ok()?.modified().ok()
        };
        latest = latest.max(t);
    }
    latest
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    eprintln!("atmos dev: {what}…");
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("{what} failed ({status})"))
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds the UI into `<workspace>/dist` when needed; returns the directory to serve.
pub fn ensure_built(root: &Path) -> Result<PathBuf, String> {
    let dist = root.join("dist");
    let built = dist.join("index.html");
    let frontend = root.join("frontend");
    let fresh = match (
        std::fs::metadata(&built).and_then(|m| m.modified()).ok(),
        newest(&frontend),
    ) {
        (Some(b), Some(src)) => b >= src,
        _ => false,
    };
    if fresh {
        return Ok(dist);
    }
    if !have("trunk") {
        eprintln!("atmos dev: the web UI needs Trunk; installing it once (about 10 minutes)");
        run(
            Command::new("cargo").args(["install", "trunk", "--version", "0.21.14", "--locked"]),
            "cargo install trunk",
        )?;
    }
    if !have("wasm-bindgen") {
        run(
            Command::new("cargo").args(["install", "wasm-bindgen-cli", "--version", "0.2.130"]),
            "cargo install wasm-bindgen-cli",
        )?;
    }
    let _ = Command::new("rustup")
        .args(["target", "add", "wasm32-unknown-unknown"])
        .status();
    run(
        Command::new("trunk")
            .arg("build")
            .arg("--release")
            .current_dir(root),
        "building the web UI (trunk build --release)",
    )?;
    Ok(dist)
}
