//! A prompt with its images, from any of the bodies the UI and the API send: JSON (`prompt`,
//! and `images` as `data:` URLs), `multipart/form-data` (`prompt`, files in `images[]`), or a
//! plain form. Every image is checked by its bytes before anything is stored.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use base64::Engine as _;
use serde::Deserialize;

use super::AppError;
use super::extract::{FormOf, JsonOf};
use super::selection::{self, SelectedInput};
use crate::store::SelectedElement;
use crate::store::images::{self, ImageError, MAX_IMAGE_BYTES, MAX_IMAGES, NewImage};

/// Largest prompt body: five images at their limit, base64-inflated, plus the text.
pub const MAX_UPLOAD_BYTES: usize = 36 * 1024 * 1024;

pub struct PromptUpload {
    /// As sent; `api::validate_prompt` trims and checks it.
    pub prompt: Option<String>,
    pub images: Vec<NewImage>,
    /// Elements picked in the preview, checked but without snippets yet.
    pub selected: Vec<SelectedElement>,
}

/// A refused image, with the prompt text that came before it in the form, so the page can
/// show the reason without losing what was typed.
#[derive(Debug)]
pub struct RefusedUpload {
    pub prompt: Option<String>,
    pub error: AppError,
}

impl From<RefusedUpload> for AppError {
    fn from(refused: RefusedUpload) -> Self {
        refused.error
    }
}

/// Like [`PromptUpload`], but a refused image comes back with the prompt (for the pages).
pub struct PageUpload(pub Result<PromptUpload, RefusedUpload>);

#[derive(Deserialize)]
struct JsonBody {
    prompt: Option<String>,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    selected: Vec<SelectedInput>,
}

#[derive(Deserialize)]
struct FormBody {
    prompt: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for PromptUpload {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        Ok(read_upload(request, state).await??)
    }
}

impl<S: Send + Sync> FromRequest<S> for PageUpload {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        Ok(Self(read_upload(request, state).await?))
    }
}

/// Reads any prompt body. The outer error is a body that cannot be read at all (too large,
/// not JSON, a broken multipart stream); the inner one a refused image or image URL, with the
/// prompt that came with it.
async fn read_upload<S: Send + Sync>(
    request: Request,
    state: &S,
) -> Result<Result<PromptUpload, RefusedUpload>, AppError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, state)
            .await
            .map_err(|rejection| AppError::Rejected {
                status: rejection.status(),
                message: rejection.body_text(),
            })?;
        return Ok(from_multipart(multipart).await);
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let FormOf(form) = FormOf::<FormBody>::from_request(request, state).await?;
        return Ok(Ok(PromptUpload {
            prompt: form.prompt,
            images: Vec::new(),
            selected: Vec::new(),
        }));
    }
    let JsonOf(body) = JsonOf::<JsonBody>::from_request(request, state).await?;
    let images = if body.images.len() > MAX_IMAGES {
        Err(ImageError::TooMany.into())
    } else {
        body.images
            .iter()
            .map(|url| images::accept(decode_data_url(url)?).map_err(AppError::from))
            .collect::<Result<_, _>>()
    };
    let selected = body
        .selected
        .into_iter()
        .map(SelectedInput::parse)
        .collect::<Result<_, _>>();
    Ok(match images.and_then(|images| Ok((images, selected?))) {
        Ok((images, selected)) => Ok(PromptUpload {
            prompt: body.prompt,
            images,
            selected,
        }),
        Err(error) => Err(RefusedUpload {
            prompt: body.prompt,
            error,
        }),
    })
}

async fn from_multipart(mut multipart: Multipart) -> Result<PromptUpload, RefusedUpload> {
    let mut upload = PromptUpload {
        prompt: None,
        images: Vec::new(),
        selected: Vec::new(),
    };
    match read_fields(&mut multipart, &mut upload).await {
        Ok(()) => Ok(upload),
        Err(error) => Err(RefusedUpload {
            prompt: upload.prompt,
            error,
        }),
    }
}

async fn read_fields(multipart: &mut Multipart, upload: &mut PromptUpload) -> Result<(), AppError> {
    let malformed = |error: axum::extract::multipart::MultipartError| AppError::Rejected {
        status: error.status(),
        message: error.body_text(),
    };
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        match field.name().unwrap_or_default() {
            "prompt" => upload.prompt = Some(field.text().await.map_err(malformed)?),
            "selected" | "selected[]" => {
                let value = field.text().await.map_err(malformed)?;
                upload.selected.push(selection::parse_field(&value)?);
            }
            "images" | "images[]" => {
                // Read in chunks so an oversized file is refused without holding it.
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                    if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                        return Err(ImageError::TooLarge(bytes.len() + chunk.len()).into());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                // A file input with nothing chosen still sends an empty part.
                if bytes.is_empty() {
                    continue;
                }
                if upload.images.len() == MAX_IMAGES {
                    return Err(ImageError::TooMany.into());
                }
                upload.images.push(images::accept(bytes)?);
            }
            _ => {}
        }
    }
    Ok(())
}

/// The bytes of a `data:<type>;base64,<data>` URL.
fn decode_data_url(url: &str) -> Result<Vec<u8>, AppError> {
    let data = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .map(|(_, data)| data)
        .ok_or_else(|| {
            AppError::Invalid("images must be data URLs: data:image/png;base64,…".to_string())
        })?;
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| AppError::Invalid("an image's base64 data is malformed".to_string()))
}
