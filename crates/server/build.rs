//! Embeds the web panel: every file under `ui/` becomes an entry of `UI_ASSETS` (its path
//! relative to `ui/`, its bytes) in `$OUT_DIR/ui_assets.rs`, included by `src/http/ui.rs`. No
//! Node and no network: the UI is hand-written ES modules and vendored files, served as they are.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("ui");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    if root.is_dir() {
        collect(&root, &mut files);
    }
    files.sort();
    let mut out = String::from(
        "/// Every file of the panel: (path under `ui/`, bytes).\npub static UI_ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for file in &files {
        let rel = file.strip_prefix(&root).expect("under ui/");
        let rel = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/");
        writeln!(out, "    ({rel:?}, include_bytes!({:?})),", file.display().to_string()).expect("write to a String");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("ui_assets.rs");
    std::fs::write(dest, out).expect("write ui_assets.rs");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read ui/");
    for entry in entries {
        let path = entry.expect("ui/ entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
