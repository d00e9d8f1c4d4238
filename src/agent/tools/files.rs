//! The file tools: write whole files, read them, and edit them by find-and-replace.

use serde_json::json;

use super::{FileArg, ToolOutcome, Toolbox, shorten};
use crate::agent::edit_file::{self, Edit};
use crate::sandbox::{FileWrite, MAX_FILE_BYTES, SandboxError, WorkspacePath};

impl Toolbox<'_> {
    pub(super) async fn write_files(&mut self, files: Vec<FileArg>) -> ToolOutcome {
        if files.is_empty() {
            return ToolOutcome::failed(
                "wrote no files",
                "Error: `files` is empty; nothing was written.",
            );
        }
        // Check every path before writing anything, so a bad path leaves the workspace untouched.
        let mut writes = Vec::with_capacity(files.len());
        for file in &files {
            if let Some(refusal) = WorkspacePath::parse(&file.path)
                .ok()
                .filter(|path| path.relative() == "package.json")
                .and_then(|_| self.pins.manifest_refusal(&file.content))
            {
                return ToolOutcome::failed(
                    "refused to write package.json: it would replace Next.js or React",
                    format!("Error: {refusal} Nothing was written; send the other files again."),
                );
            }
            if file.content.len() > MAX_FILE_BYTES {
                return ToolOutcome::failed(
                    format!("refused to write {}: too large", shorten(&file.path, 80)),
                    format!(
                        "Error: {} has {} bytes; files may have at most {MAX_FILE_BYTES}. Nothing was written. Split it into smaller modules.",
                        file.path,
                        file.content.len()
                    ),
                );
            }
            match WorkspacePath::parse(&file.path) {
                Ok(path) => writes.push(FileWrite {
                    path,
                    content: file.content.clone().into_bytes(),
                }),
                Err(error) => {
                    return ToolOutcome::failed(
                        format!("refused to write {}", shorten(&file.path, 80)),
                        format!(
                            "Error: {error}. Nothing was written. Use paths relative to /home/user such as app/page.tsx."
                        ),
                    );
                }
            }
        }
        // What each file held before, to tell people how much a step changed.
        let mut before = Vec::with_capacity(writes.len());
        for write in &writes {
            before.push(self.current_text(&write.path).await);
        }
        if let Err(error) = self.sandbox.write_files(&writes).await {
            return ToolOutcome::sandbox_failed(
                "failed to write files",
                format!("Error writing files: {error}"),
                &error,
            );
        }
        let described: Vec<String> = writes
            .iter()
            .zip(&files)
            .zip(&before)
            .map(|((write, file), before)| {
                let lines = file.content.lines().count();
                let plural = if lines == 1 { "" } else { "s" };
                match before {
                    Some(before) => {
                        let (added, removed) = crate::diff::line_changes(before, &file.content);
                        format!("{} ({lines} line{plural}, +{added} −{removed})", write.path)
                    }
                    None => format!("{} ({lines} line{plural})", write.path),
                }
            })
            .collect();
        for (write, file) in writes.into_iter().zip(files) {
            self.remember(write.path.relative(), file.content);
        }
        ToolOutcome {
            ok: true,
            summary: format!("wrote {}", shorten(&described.join(", "), 160)),
            content: format!(
                "Wrote {} file(s): {}",
                described.len(),
                described.join(", ")
            ),
            lost: None,
        }
    }

    pub(super) async fn read_files(&mut self, paths: &[String]) -> ToolOutcome {
        let mut results = Vec::with_capacity(paths.len());
        let mut failures = 0;
        let mut lost = None;
        for raw in paths {
            let entry = match WorkspacePath::parse(raw) {
                Ok(path) => match self.sandbox.read_file(&path).await {
                    Ok(bytes) => json!({ "path": raw, "content": String::from_utf8_lossy(&bytes) }),
                    Err(SandboxError::FileNotFound(_)) => {
                        failures += 1;
                        json!({ "path": raw, "error": "file not found" })
                    }
                    Err(error) => {
                        failures += 1;
                        if error.is_lost() {
                            lost = Some(error.to_string());
                        }
                        json!({ "path": raw, "error": error.to_string() })
                    }
                },
                Err(error) => {
                    failures += 1;
                    json!({ "path": raw, "error": error.to_string() })
                }
            };
            results.push(entry);
        }
        let listed = shorten(&paths.join(", "), 120);
        ToolOutcome {
            ok: failures == 0,
            summary: if failures == 0 {
                format!("read {listed}")
            } else {
                format!("read {listed} ({failures} failed)")
            },
            content: serde_json::Value::Array(results).to_string(),
            lost,
        }
    }

    /// Applies `edits` to one file: all of them or, when one cannot be applied, none.
    pub(super) async fn edit_file(&mut self, raw_path: &str, edits: &[Edit]) -> ToolOutcome {
        let short = shorten(raw_path, 80);
        let path = match WorkspacePath::parse(raw_path) {
            Ok(path) => path,
            Err(error) => {
                return ToolOutcome::failed(
                    format!("refused to edit {short}"),
                    format!(
                        "Error: {error}. Nothing was changed. Use paths relative to /home/user such as app/page.tsx."
                    ),
                );
            }
        };
        if edits.is_empty() {
            return ToolOutcome::failed(
                format!("edited nothing in {short}"),
                "Error: `edits` is empty; nothing was changed.",
            );
        }
        let before = match self.sandbox.read_file(&path).await {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    return ToolOutcome::failed(
                        format!("refused to edit {short}: not text"),
                        format!("Error: {path} is not UTF-8 text; nothing was changed."),
                    );
                }
            },
            Err(SandboxError::FileNotFound(_)) => {
                return ToolOutcome::failed(
                    format!("could not edit {short}: no such file"),
                    format!("Error: {path} does not exist. Create it with createOrUpdateFiles."),
                );
            }
            Err(error) => {
                return ToolOutcome::sandbox_failed(
                    format!("could not read {short}"),
                    format!("Error reading {path}: {error}"),
                    &error,
                );
            }
        };
        let after = match edit_file::apply(&before, edits) {
            Ok(after) => after,
            Err(error) => {
                return ToolOutcome::failed(
                    format!("could not edit {short}: {}", first_line(&error.to_string())),
                    format!("Error in {path}: {error}\nNothing was changed in {path}."),
                );
            }
        };
        if path.relative() == "package.json"
            && let Some(refusal) = self.pins.manifest_refusal(&after)
        {
            return ToolOutcome::failed(
                "refused to edit package.json: it would replace Next.js or React",
                format!("Error: {refusal} Nothing was changed."),
            );
        }
        if after.len() > MAX_FILE_BYTES {
            return ToolOutcome::failed(
                format!("refused to edit {short}: too large"),
                format!(
                    "Error: {path} would have {} bytes; files may have at most {MAX_FILE_BYTES}. Nothing was changed.",
                    after.len()
                ),
            );
        }
        let write = FileWrite {
            path: path.clone(),
            content: after.clone().into_bytes(),
        };
        if let Err(error) = self.sandbox.write_files(std::slice::from_ref(&write)).await {
            return ToolOutcome::sandbox_failed(
                format!("failed to edit {short}"),
                format!("Error writing {path}: {error}"),
                &error,
            );
        }
        let (added, removed) = crate::diff::line_changes(&before, &after);
        self.remember(path.relative(), after);
        ToolOutcome {
            ok: true,
            summary: format!("edited {path} (+{added} −{removed})"),
            content: format!(
                "Edited {path}: {} edit(s) applied, {added} line(s) added, {removed} removed.",
                edits.len()
            ),
            lost: None,
        }
    }

    /// The file's text as it is now, if it exists (and is text).
    async fn current_text(&self, path: &WorkspacePath) -> Option<String> {
        if let Some(written) = self.written.get(path.relative()) {
            return Some(written.clone());
        }
        let bytes = self.sandbox.read_file(path).await.ok()?;
        String::from_utf8(bytes).ok()
    }

    /// Keeps a written file for the version, and in the journal as soon as it is written.
    fn remember(&mut self, path: &str, content: String) {
        if let Some(journal) = &self.journal {
            journal
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(path.to_string(), content.clone());
        }
        self.written.insert(path.to_string(), content);
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
