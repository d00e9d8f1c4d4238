//! Bringing an existing app in: its files from a zip (a download from GitHub or another
//! builder) or a folder, checked before anything is kept. What comes in is untrusted: paths
//! are checked, sizes are capped (a zip bomb is refused, not unpacked), and dependencies,
//! git internals and secrets stay out. Git imports read their files the same way, through
//! [`crate::git`].

pub mod stack;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

pub use stack::Stack;

/// Most files an import may hold (after what stays out).
pub const MAX_FILES: usize = 5_000;
/// Most bytes an import may unpack to, in all.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// An entry that unpacks to more than this many times its packed size is a zip bomb.
const MAX_RATIO: u64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Too much: more files or bytes than an import may hold (413).
    #[error("{0}")]
    TooLarge(String),
    /// Not an app that can come in: not a zip, unsafe paths, an unknown stack (422).
    #[error("{0}")]
    Refused(String),
    #[error("could not read the folder: {0}")]
    Io(#[from] std::io::Error),
}

/// What an import brings: its text files, what stayed out and why, and its stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub files: BTreeMap<String, String>,
    /// `(path, why)`, in path order.
    pub skipped: Vec<(String, &'static str)>,
    pub stack: Stack,
}

/// Why a path stays out, or `None` to take it.
pub fn left_out(path: &str) -> Option<&'static str> {
    let parts: Vec<&str> = path.split('/').collect();
    let name = parts.last().copied().unwrap_or(path);
    if parts.contains(&"node_modules") {
        Some("node_modules is installed, not kept")
    } else if parts.contains(&".git") {
        Some("git's own files (a git import keeps the history instead)")
    } else if parts.contains(&".next") {
        Some("Next.js build output")
    } else if name.starts_with(".env") {
        Some("environment files may hold secrets and are never taken in")
    } else if name == ".DS_Store" {
        Some("a Finder file")
    } else {
        None
    }
}

/// A relative path with no `..`, no root and no empty parts, as `/`-joined text.
fn safe_path(raw: &str) -> Result<String, ImportError> {
    let refused = || ImportError::Refused(format!("the path {raw:?} leaves the app's folder"));
    let normal = raw.replace('\\', "/");
    if normal.starts_with('/') || normal.contains('\0') {
        return Err(refused());
    }
    let mut parts = Vec::new();
    for component in Path::new(&normal).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(refused)?.to_string()),
            Component::CurDir => {}
            _ => return Err(refused()),
        }
    }
    if parts.is_empty() {
        return Err(refused());
    }
    Ok(parts.join("/"))
}

/// Collects files one at a time under the caps; binary files stay out (versions hold text).
#[derive(Default)]
struct Collector {
    files: BTreeMap<String, String>,
    skipped: Vec<(String, &'static str)>,
    bytes: u64,
}

impl Collector {
    fn add(&mut self, path: String, content: Vec<u8>) -> Result<(), ImportError> {
        self.bytes += content.len() as u64;
        if self.bytes > MAX_BYTES {
            return Err(ImportError::TooLarge(format!(
                "the app unpacks to more than {} MB",
                MAX_BYTES / (1024 * 1024)
            )));
        }
        match String::from_utf8(content) {
            Ok(text) if !text.contains('\0') => {
                self.files.insert(path, text);
                if self.files.len() > MAX_FILES {
                    return Err(ImportError::TooLarge(format!(
                        "the app holds more than {MAX_FILES} files"
                    )));
                }
            }
            _ => self
                .skipped
                .push((path, "a binary file (versions hold text)")),
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Imported, ImportError> {
        unwrap_single_folder(&mut self.files, &mut self.skipped);
        let stack = Stack::of(&self.files)?;
        self.skipped.sort();
        Ok(Imported {
            files: self.files,
            skipped: self.skipped,
            stack,
        })
    }
}

/// An app whose files all sit in one top folder (as GitHub's downloads do) is taken from
/// inside it.
fn unwrap_single_folder(
    files: &mut BTreeMap<String, String>,
    skipped: &mut [(String, &'static str)],
) {
    let top = |path: &str| path.split_once('/').map(|(top, _)| top.to_string());
    let Some(first) = files.keys().next().and_then(|path| top(path)) else {
        return;
    };
    let prefix = format!("{first}/");
    let all_inside = files.keys().all(|path| path.starts_with(&prefix))
        && skipped.iter().all(|(path, _)| path.starts_with(&prefix));
    if !all_inside {
        return;
    }
    *files = std::mem::take(files)
        .into_iter()
        .map(|(path, content)| (path[prefix.len()..].to_string(), content))
        .collect();
    for (path, _) in skipped.iter_mut() {
        *path = path[prefix.len()..].to_string();
    }
}

/// The app in a zip. Nothing is written anywhere: the answer is in memory or an error.
pub fn from_zip(bytes: &[u8]) -> Result<Imported, ImportError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|error| ImportError::Refused(format!("not a zip file: {error}")))?;
    if archive.len() > MAX_FILES * 4 {
        return Err(ImportError::TooLarge(format!(
            "the zip holds {} entries",
            archive.len()
        )));
    }
    let mut collector = Collector::default();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|error| ImportError::Refused(format!("a damaged zip entry: {error}")))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry
            .name()
            .map_err(|error| {
                ImportError::Refused(format!("a zip entry's name cannot be read: {error}"))
            })?
            .into_owned();
        let path = safe_path(&name)?;
        if entry.is_symlink() {
            collector.skipped.push((path, "a symbolic link"));
            continue;
        }
        if let Some(why) = left_out(&path) {
            collector.skipped.push((path, why));
            continue;
        }
        let declared = entry.size();
        if declared > MAX_BYTES || declared > entry.compressed_size().max(1) * MAX_RATIO {
            return Err(ImportError::TooLarge(format!(
                "{path} unpacks to {declared} bytes from {}: a zip bomb is not unpacked",
                entry.compressed_size()
            )));
        }
        // Read no more than declared (plus one byte to catch a lying header).
        let mut content = Vec::with_capacity(declared as usize);
        (&mut entry)
            .take(declared + 1)
            .read_to_end(&mut content)
            .map_err(|error| ImportError::Refused(format!("{path} cannot be unpacked: {error}")))?;
        if content.len() as u64 > declared {
            return Err(ImportError::Refused(format!(
                "{path} holds more than its zip header says"
            )));
        }
        collector.add(path, content)?;
    }
    collector.finish()
}

/// The app in a folder on this machine (`codeflux import ./dir`); links are not followed.
pub fn from_folder(root: &Path) -> Result<Imported, ImportError> {
    let mut collector = Collector::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let full = entry.path();
            let relative = full.strip_prefix(root).map_err(|_| {
                ImportError::Refused(format!("{} is outside the folder", full.display()))
            })?;
            let path = safe_path(&relative.to_string_lossy())?;
            let kind = entry.file_type()?;
            if let Some(why) = left_out(&path) {
                collector.skipped.push((path, why));
            } else if kind.is_symlink() {
                collector.skipped.push((path, "a symbolic link"));
            } else if kind.is_dir() {
                pending.push(full);
            } else if kind.is_file() {
                if entry.metadata()?.len() > MAX_BYTES {
                    return Err(ImportError::TooLarge(format!(
                        "{path} is larger than an import may be"
                    )));
                }
                collector.add(path, std::fs::read(&full)?)?;
            }
        }
    }
    collector.finish()
}

/// An import read from a git commit ([`crate::git::tree::files_at`] already left out what
/// must stay out).
pub fn from_tree(
    files: BTreeMap<String, String>,
    skipped: Vec<(String, &'static str)>,
) -> Result<Imported, ImportError> {
    let collector = Collector {
        bytes: files.values().map(|content| content.len() as u64).sum(),
        files,
        skipped,
    };
    collector.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, content) in entries {
            writer.start_file(*name, options).unwrap();
            std::io::Write::write_all(&mut writer, content).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    const PACKAGE: &[u8] = br#"{"dependencies":{"next":"14.2.3","react":"18.3.1"}}"#;

    #[test]
    fn a_github_download_is_unwrapped_and_what_must_stay_out_is_listed() {
        let zip = zip_of(&[
            ("app-main/package.json", PACKAGE),
            (
                "app-main/app/page.tsx",
                b"export default function Page() { return null; }",
            ),
            ("app-main/.env.local", b"SECRET=1"),
            (
                "app-main/node_modules/react/index.js",
                b"module.exports = {}",
            ),
            ("app-main/public/logo.png", b"\x89PNG\r\n\x1a\n\0\0"),
        ]);
        let imported = from_zip(&zip).unwrap();
        assert_eq!(
            imported.files.keys().collect::<Vec<_>>(),
            ["app/page.tsx", "package.json"]
        );
        let skipped: Vec<&str> = imported
            .skipped
            .iter()
            .map(|(path, _)| path.as_str())
            .collect();
        assert_eq!(
            skipped,
            [
                ".env.local",
                "node_modules/react/index.js",
                "public/logo.png"
            ]
        );
        assert_eq!(imported.stack.framework, stack::Framework::Next);
    }

    #[test]
    fn paths_out_of_the_folder_bombs_and_non_zips_are_refused() {
        let escape = zip_of(&[("../evil.sh", b"rm -rf /"), ("package.json", PACKAGE)]);
        assert!(matches!(from_zip(&escape), Err(ImportError::Refused(_))));
        let absolute = zip_of(&[("/etc/passwd", b"x"), ("package.json", PACKAGE)]);
        assert!(matches!(from_zip(&absolute), Err(ImportError::Refused(_))));
        let zeros = vec![0u8; 20 * 1024 * 1024];
        let bomb = zip_of(&[("package.json", PACKAGE), ("big.txt", &zeros)]);
        assert!(bomb.len() < 200 * 1024, "deflate packs it small");
        assert!(matches!(from_zip(&bomb), Err(ImportError::TooLarge(_))));
        assert!(matches!(
            from_zip(b"not a zip"),
            Err(ImportError::Refused(_))
        ));
    }

    #[test]
    fn a_folder_is_read_without_its_dependencies_or_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::create_dir_all(dir.path().join("node_modules/x")).unwrap();
        std::fs::write(dir.path().join("package.json"), PACKAGE).unwrap();
        std::fs::write(dir.path().join("app/page.tsx"), "page").unwrap();
        std::fs::write(dir.path().join("node_modules/x/index.js"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("app/passwd")).unwrap();
        let imported = from_folder(dir.path()).unwrap();
        assert_eq!(
            imported.files.keys().collect::<Vec<_>>(),
            ["app/page.tsx", "package.json"]
        );
        let skipped: Vec<&str> = imported
            .skipped
            .iter()
            .map(|(path, _)| path.as_str())
            .collect();
        assert_eq!(skipped, ["app/passwd", "node_modules"]);
    }
}
