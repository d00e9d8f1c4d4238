//! Images attached to a prompt (a screenshot, a mockup): checked by their bytes, not by what
//! the client claims, and kept with the message they came with.

use serde::{Deserialize, Serialize};

/// Most images one prompt may carry.
pub const MAX_IMAGES: usize = 5;
/// Largest image accepted, in bytes.
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    Png,
    Jpeg,
    Webp,
}

impl ImageKind {
    /// Recognises PNG, JPEG and WebP by their first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else {
            None
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }
}

/// An image on its way into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    pub kind: ImageKind,
    pub bytes: Vec<u8>,
}

/// What a message records of each image; the bytes are kept apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub kind: ImageKind,
    pub bytes: usize,
}

/// Why an upload is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("at most {MAX_IMAGES} images per prompt")]
    TooMany,
    #[error("an image is {0} bytes; at most {MAX_IMAGE_BYTES} bytes (5 MB) each")]
    TooLarge(usize),
    #[error("only PNG, JPEG and WebP images are accepted")]
    UnsupportedType,
}

/// Checks one uploaded image and names its kind from its bytes.
pub fn accept(bytes: Vec<u8>) -> Result<NewImage, ImageError> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge(bytes.len()));
    }
    let kind = ImageKind::sniff(&bytes).ok_or(ImageError::UnsupportedType)?;
    Ok(NewImage { kind, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_known_by_their_bytes() {
        assert_eq!(
            ImageKind::sniff(b"\x89PNG\r\n\x1a\nrest"),
            Some(ImageKind::Png)
        );
        assert_eq!(
            ImageKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageKind::Jpeg)
        );
        assert_eq!(
            ImageKind::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageKind::Webp)
        );
        assert_eq!(ImageKind::sniff(b"GIF89a"), None);
        assert_eq!(accept(b"<svg/>".to_vec()), Err(ImageError::UnsupportedType));
        let huge = [b"\x89PNG\r\n\x1a\n".as_slice(), &vec![0; MAX_IMAGE_BYTES]].concat();
        assert!(matches!(accept(huge), Err(ImageError::TooLarge(_))));
    }
}
