//! Embeds the demo app, the browser SDK and the examples (`web/`) into the binary, so
//! `tandem serve` shows the demo from any directory. A configured `server.web_dir`
//! still wins (handy while editing the app).

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name == "node_modules" || name == "test" {
            continue;
        }
        let rel = format!("{prefix}{name}");
        if path.is_dir() {
            collect(&path, &format!("{rel}/"), out);
        } else {
            out.push((rel, path));
        }
    }
}

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    println!("cargo:rerun-if-changed={}", web.display());
    let mut files = Vec::new();
    for section in ["app", "sdk", "examples"] {
        let dir = web.join(section);
        println!("cargo:rerun-if-changed={}", dir.display());
        collect(&dir, &format!("{section}/"), &mut files);
    }
    let mut code =
        String::from("/// (path under web/, contents)\npub static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let abs = path.canonicalize().expect("embedded file path");
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("embedded_web.rs");
    std::fs::write(out, code).expect("write embedded_web.rs");
}
