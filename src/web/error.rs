//! One error type for every handler: domain errors become a status code and a JSON body.

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;
use crate::store::images::ImageError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    /// More work than one project may have waiting.
    #[error("{0}")]
    TooBusy(String),
    #[error("sign in first: send `Authorization: Bearer <CODEFLUX_AUTH_TOKEN>`")]
    Unauthorized,
    /// A request axum could not take apart (body, path, query), with the status it calls for.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    #[error("storage failed: {0}")]
    Store(StoreError),
    /// An attached image that cannot be taken (too large, wrong type, too many).
    #[error("{0}")]
    Image(#[from] crate::store::images::ImageError),
    #[error("{0}")]
    Publish(#[from] crate::publish::PublishError),
    #[error("{0}")]
    Git(#[from] crate::git::GitError),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => AppError::NotFound(what),
            StoreError::TooManyWaiting(_) => AppError::TooBusy(error.to_string()),
            other => AppError::Store(other),
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        AppError::Rejected {
            status: rejection.status(),
            message: format!(
                "expected a JSON body like {{\"prompt\": \"...\"}} of at most 1 MiB: {}",
                rejection.body_text()
            ),
        }
    }
}

impl From<FormRejection> for AppError {
    fn from(rejection: FormRejection) -> Self {
        AppError::Rejected {
            status: rejection.status(),
            message: format!("unreadable form: {}", rejection.body_text()),
        }
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        AppError::Rejected {
            status: rejection.status(),
            message: format!("malformed address: {}", rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        AppError::Rejected {
            status: rejection.status(),
            message: format!("malformed query: {}", rejection.body_text()),
        }
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooBusy(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Rejected { status, .. } => *status,
            AppError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Git(error) => {
                use crate::git::GitError;
                match error {
                    GitError::NoGit(_) => StatusCode::SERVICE_UNAVAILABLE,
                    GitError::BadRemote(_) | GitError::Refused(_) => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                    GitError::Behind | GitError::NoRemote => StatusCode::CONFLICT,
                    GitError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                    GitError::Remote(_) => StatusCode::BAD_GATEWAY,
                    GitError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
            AppError::Image(error) => match error {
                ImageError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                ImageError::UnsupportedType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ImageError::TooMany => StatusCode::UNPROCESSABLE_ENTITY,
            },
            AppError::Publish(error) => {
                use crate::publish::PublishError;
                match error {
                    PublishError::NoEngine(_) => StatusCode::SERVICE_UNAVAILABLE,
                    PublishError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    PublishError::Conflict(_) | PublishError::DataLoss(_) => StatusCode::CONFLICT,
                    PublishError::NotPublished | PublishError::NoVersion(_) => {
                        StatusCode::NOT_FOUND
                    }
                    PublishError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Store(error) = &self {
            tracing::error!(%error, "request failed in storage");
        }
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}
