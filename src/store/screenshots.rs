//! The browser check's screenshots, one per page, kept with the version they show. They are
//! JPEGs the sandbox made, so their bytes are checked before they are kept or served.

use uuid::Uuid;

use super::images::ImageKind;
use super::{Store, StoreResult, pair_key};

/// Most pages of one version whose screenshots are kept (the check opens at most this many).
pub const MAX_SCREENSHOTS: usize = 12;

impl Store {
    /// Keeps a version's screenshots: `shots[i]` is the page at index `i` of its browser
    /// check. Bytes that are not an image are left out rather than kept.
    pub fn put_screenshots(
        &self,
        project_id: Uuid,
        version_id: Uuid,
        shots: &[(usize, Vec<u8>)],
    ) -> StoreResult<usize> {
        let mut kept = 0;
        for (index, bytes) in shots {
            if *index >= MAX_SCREENSHOTS || ImageKind::sniff(bytes).is_none() {
                continue;
            }
            self.screenshots.insert(
                screenshot_key(project_id, version_id, *index),
                bytes.as_slice(),
            )?;
            kept += 1;
        }
        Ok(kept)
    }

    /// One page's screenshot: its media type and bytes.
    pub fn screenshot(
        &self,
        project_id: Uuid,
        version_id: Uuid,
        index: usize,
    ) -> StoreResult<Option<(&'static str, Vec<u8>)>> {
        if index >= MAX_SCREENSHOTS {
            return Ok(None);
        }
        let Some(bytes) = self
            .screenshots
            .get(screenshot_key(project_id, version_id, index))?
        else {
            return Ok(None);
        };
        Ok(ImageKind::sniff(&bytes).map(|kind| (kind.media_type(), bytes.to_vec())))
    }
}

fn screenshot_key(project_id: Uuid, version_id: Uuid, index: usize) -> Vec<u8> {
    let mut key = pair_key(project_id, version_id);
    key.push(index as u8);
    key
}
