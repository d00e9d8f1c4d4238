//! axum's extractors with our error type as their rejection, so a malformed id, query, form
//! or JSON body gets the same `{"error": …}` answer (or error page) as every other failure,
//! with the status the rejection calls for (400, 413, 415, 422).

use axum::extract::{FromRequest, FromRequestParts};

use super::AppError;

/// A path parameter (`/projects/{id}`).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct PathOf<T>(pub T);

/// A query string.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct QueryOf<T>(pub T);

/// A JSON body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct JsonOf<T>(pub T);

/// A form body.
#[derive(FromRequest)]
#[from_request(via(axum::Form), rejection(AppError))]
pub struct FormOf<T>(pub T);
