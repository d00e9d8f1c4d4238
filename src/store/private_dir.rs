//! The data directory holds every project's code, prompts and images: only the user that
//! runs CodeFlux may read it. Created 0700; what is inside is tightened to 0600 on open.

use std::io;
use std::path::Path;

/// Creates `path` (and its parents) owner-only, or tightens an existing directory.
pub(super) fn prepare(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !path.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)?;
        }
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            tracing::info!(path = %path.display(), "made the data directory private (0700)");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(path)?;
    Ok(())
}

/// Sets every file below `path` to 0600 and every directory to 0700.
pub(super) fn restrict_files(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let wanted = if kind.is_dir() {
                restrict_files(&entry.path())?;
                0o700
            } else if kind.is_file() {
                0o600
            } else {
                continue;
            };
            if entry.metadata()?.permissions().mode() & 0o777 != wanted {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(wanted))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
