//! Compiles the operator's page (`ui/`) into the binary: every file becomes a static byte
//! string in `$OUT_DIR/ui_assets.rs`, and `index.html` gets the assets' address, which carries
//! a digest of their content. A changed asset is thereby a new URL, so browsers may cache every
//! asset for a year and still never run a stale one next to a new page.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs, io};

/// The marker in `ui/index.html` that becomes `assets/<digest>`.
const MARKER: &str = "{{ASSETS}}";

enum BuildError {
    Io(PathBuf, io::Error),
    Env(&'static str),
    UnknownType(String),
    BadName(String),
    NoMarker,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Io(path, error) => write!(f, "{}: {error}", path.display()),
            BuildError::Env(name) => write!(f, "cargo did not set {name}"),
            BuildError::UnknownType(name) => write!(
                f,
                "ui/{name}: no content type known for this extension (add it to build.rs)"
            ),
            BuildError::BadName(name) => write!(
                f,
                "ui/{name}: asset names are ASCII letters, digits, '.', '-', '_' and '/'"
            ),
            BuildError::NoMarker => write!(f, "ui/index.html does not contain {MARKER}"),
        }
    }
}

// `main` returning an error prints its Debug form: make that the readable one.
impl std::fmt::Debug for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for BuildError {}

fn content_type(name: &str) -> Option<&'static str> {
    let extension = name.rsplit_once('.')?.1;
    Some(match extension {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json; charset=utf-8",
        "txt" | "md" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

/// Every file under `dir`, as (name relative to `root` with `/` separators, path), sorted.
fn files(root: &Path, dir: &Path, found: &mut Vec<(String, PathBuf)>) -> Result<(), BuildError> {
    let entries = fs::read_dir(dir).map_err(|e| BuildError::Io(dir.to_owned(), e))?;
    for entry in entries {
        let path = entry.map_err(|e| BuildError::Io(dir.to_owned(), e))?.path();
        if path.is_dir() {
            files(root, &path, found)?;
            continue;
        }
        let relative = path.strip_prefix(root).unwrap_or(&path);
        let name = relative
            .components()
            .map(|part| part.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        // Editors' swap and backup files are not assets.
        if name
            .rsplit('/')
            .next()
            .is_some_and(|base| base.starts_with('.'))
            || name.ends_with('~')
        {
            continue;
        }
        found.push((name, path));
    }
    Ok(())
}

/// FNV-1a, 64 bits: the same digest for the same bytes on every toolchain (std's hasher does
/// not promise that).
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn main() -> Result<(), BuildError> {
    let manifest =
        env::var_os("CARGO_MANIFEST_DIR").ok_or(BuildError::Env("CARGO_MANIFEST_DIR"))?;
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or(BuildError::Env("OUT_DIR"))?);
    let root = PathBuf::from(manifest).join("ui");
    println!("cargo:rerun-if-changed=ui");

    let mut found = Vec::new();
    files(&root, &root, &mut found)?;
    found.sort();

    let mut digest = 0xcbf2_9ce4_8422_2325_u64;
    let mut index = None;
    let mut table = String::new();
    for (name, path) in &found {
        let valid = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        if !valid || name.starts_with('/') || name.contains("..") {
            return Err(BuildError::BadName(name.clone()));
        }
        if name == "index.html" {
            index = Some(path.clone());
            continue;
        }
        let kind = content_type(name).ok_or_else(|| BuildError::UnknownType(name.clone()))?;
        let bytes = fs::read(path).map_err(|e| BuildError::Io(path.clone(), e))?;
        // Names are hashed with the bytes, so a renamed file also changes the address.
        digest = fnv1a(digest, name.as_bytes());
        digest = fnv1a(digest, &(bytes.len() as u64).to_le_bytes());
        digest = fnv1a(digest, &bytes);
        let _ = writeln!(
            table,
            "    Asset {{ name: {name:?}, content_type: {kind:?}, body: include_bytes!({:?}) }},",
            path.display().to_string()
        );
    }
    let digest = format!("{digest:016x}");

    let index = index
        .ok_or_else(|| BuildError::Io(root.join("index.html"), io::ErrorKind::NotFound.into()))?;
    let html = fs::read_to_string(&index).map_err(|e| BuildError::Io(index.clone(), e))?;
    if !html.contains(MARKER) {
        return Err(BuildError::NoMarker);
    }
    let html = html.replace(MARKER, &format!("assets/{digest}"));
    let etag = format!("\"{:016x}\"", fnv1a(0xcbf2_9ce4_8422_2325, html.as_bytes()));
    let index_out = out.join("index.html");
    fs::write(&index_out, html).map_err(|e| BuildError::Io(index_out.clone(), e))?;

    let source = format!(
        "/// The digest of every asset, the path segment under `/ui/assets/`.\n\
         pub(crate) const DIGEST: &str = {digest:?};\n\
         /// `index.html` with the assets' address filled in.\n\
         pub(crate) const INDEX: &[u8] = include_bytes!({:?});\n\
         /// The entity tag of `INDEX`.\n\
         pub(crate) const INDEX_ETAG: &str = {etag:?};\n\
         /// Every asset but `index.html`, by name.\n\
         pub(crate) const ASSETS: &[Asset] = &[\n{table}];\n",
        index_out.display().to_string()
    );
    let table_out = out.join("ui_assets.rs");
    fs::write(&table_out, source).map_err(|e| BuildError::Io(table_out, e))?;
    Ok(())
}
