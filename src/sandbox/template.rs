//! The bundled Next.js sandbox template (`sandbox-templates/nextjs/`), embedded in the binary
//! so that `codeflux` alone can build the sandbox image, even air-gapped.

use std::io::Write;

use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

/// The name of the build-context file that carries the extra CA bundle (empty when none).
pub const EXTRA_CA_FILE: &str = "codeflux-extra-ca.crt";

#[derive(RustEmbed)]
#[folder = "sandbox-templates/nextjs/"]
#[exclude = "node_modules/*"]
#[exclude = ".next/*"]
#[exclude = "codeflux-extra-ca.crt"]
struct TemplateFiles;

/// A ready-to-send Docker build context and the image tag it produces.
pub struct BuildContext {
    /// An uncompressed tar of the template plus the CA file.
    pub tar: Vec<u8>,
    /// `codeflux-sandbox:<12 hex>`: changes whenever the template, base image or CA change.
    pub tag: String,
    /// The template's files alone (see [`digest`]), recorded on the image as a label.
    pub template_digest: String,
}

/// The image label that records which template an image was built from, so an image
/// carried to another machine can be matched to that machine's binary.
pub const DIGEST_LABEL: &str = "codeflux.template.digest";

/// A digest of the embedded template's files: equal on every machine running this version,
/// whatever base image or CA it is configured with.
pub fn digest() -> String {
    let mut hasher = Sha256::new();
    for name in file_names() {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(file(&name).unwrap_or_default());
    }
    hex::encode(hasher.finalize())[..16].to_string()
}

/// Paths of the embedded template, sorted.
pub fn file_names() -> Vec<String> {
    let mut names: Vec<String> = TemplateFiles::iter()
        .map(|name| name.into_owned())
        .collect();
    names.sort();
    names
}

/// One embedded template file.
pub fn file(name: &str) -> Option<Vec<u8>> {
    TemplateFiles::get(name).map(|file| file.data.into_owned())
}

/// The npm packages the template installs (its `dependencies`), by name.
pub fn installed_packages() -> Vec<String> {
    file("package.json")
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|manifest| {
            manifest["dependencies"]
                .as_object()
                .map(|dependencies| dependencies.keys().cloned().collect())
        })
        .unwrap_or_default()
}

/// Template files that make the sandbox (its image, its helpers) rather than the app.
fn sandbox_only(name: &str) -> bool {
    matches!(
        name,
        "Dockerfile"
            | "e2b.Dockerfile"
            | "e2b.toml"
            | "start-dev.sh"
            | "README.md"
            | ".dockerignore"
    ) || name.starts_with("codeflux-browser/")
        || (name.starts_with("codeflux-") && (name.ends_with(".cjs") || name.ends_with(".sh")))
}

/// The template's files that belong to every app (package.json, configs, the UI kit, the
/// database client): what a copy of the app needs outside CodeFlux besides its own files.
pub fn app_files() -> Vec<String> {
    file_names()
        .into_iter()
        .filter(|name| !sandbox_only(name))
        .collect()
}

/// Builds the tar context in memory. The base image is a build argument, so it is part of
/// the tag but not of the tar.
pub fn build_context(base_image: &str, extra_ca: Option<&[u8]>) -> std::io::Result<BuildContext> {
    let ca = extra_ca.unwrap_or_default();
    let template_digest = digest();
    let mut builder = tar::Builder::new(Vec::new());
    for name in file_names() {
        let data = file(&name).unwrap_or_default();
        append(&mut builder, &name, &data, mode_for(&name))?;
    }
    append(&mut builder, EXTRA_CA_FILE, ca, 0o644)?;
    let mut hasher = Sha256::new();
    // v2: images carry the digest label; older images without it are rebuilt.
    hasher.update(b"codeflux-sandbox-v2\0");
    hasher.update(template_digest.as_bytes());
    hasher.update(b"\0base-image\0");
    hasher.update(base_image.as_bytes());
    hasher.update(b"\0extra-ca\0");
    hasher.update(ca);
    let mut tar = builder.into_inner()?;
    tar.flush()?;
    let digest = hex::encode(hasher.finalize());
    Ok(BuildContext {
        tar,
        tag: format!("codeflux-sandbox:{}", &digest[..12]),
        template_digest,
    })
}

fn mode_for(name: &str) -> u32 {
    if name.ends_with(".sh") { 0o755 } else { 0o644 }
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, name, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let name = entry.path().unwrap().display().to_string();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    #[test]
    fn context_holds_the_template_and_the_ca_file() {
        let context = build_context("node:20-bookworm", Some(b"PEM")).unwrap();
        let listed = entries(&context.tar);
        let names: Vec<&str> = listed.iter().map(|(name, _)| name.as_str()).collect();
        assert!(names.contains(&"Dockerfile"), "{names:?}");
        assert!(names.contains(&"package.json"));
        assert!(!names.iter().any(|name| name.contains("node_modules")));
        let ca = listed
            .iter()
            .find(|(name, _)| name == EXTRA_CA_FILE)
            .unwrap();
        assert_eq!(ca.1, b"PEM");
        let without_ca = build_context("node:20-bookworm", None).unwrap();
        assert!(
            entries(&without_ca.tar)
                .iter()
                .any(|(name, data)| name == EXTRA_CA_FILE && data.is_empty())
        );
    }

    #[test]
    fn tag_follows_base_image_and_ca() {
        let tag = |base: &str, ca: Option<&[u8]>| build_context(base, ca).unwrap().tag;
        assert_eq!(tag("a", None), tag("a", None));
        assert_ne!(tag("a", None), tag("b", None));
        assert_ne!(tag("a", None), tag("a", Some(b"x")));
        assert!(tag("a", None).starts_with("codeflux-sandbox:"));
    }
}
