//! The one place where a failure becomes an HTTP status and a problem `code` (ER-01; the
//! README's table of codes). Client errors are ordinary values; only `Unavailable` and
//! `Internal` are server-side, and their detail stays in the log.

use std::collections::BTreeMap;

use lambda_http::http::StatusCode;

use crate::store::StoreError;

/// Field name -> reason, as the `errors` member of a `validation_failed` problem.
pub type FieldErrors = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON")]
    MalformedJson,
    #[error("the request body is larger than 16 KiB")]
    PayloadTooLarge,
    #[error("the request body must be sent as application/json")]
    UnsupportedMediaType,
    #[error("some fields are missing or invalid")]
    Validation(FieldErrors),
    #[error("the credentials are not valid")]
    InvalidCredentials,
    #[error("a valid access token is required")]
    InvalidToken,
    #[error("this refresh token was already used; the session has been revoked")]
    TokenReused,
    #[error("the session has expired; sign in again")]
    SessionExpired,
    #[error("the request's origin is not allowed to use cookie authentication")]
    CsrfRejected,
    #[error("this change needs the current password")]
    ReauthenticationRequired,
    #[error("verify the email address first: enter the code mailed to it")]
    EmailNotVerified,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("this username is taken")]
    UsernameTaken,
    #[error("two-step sign-in is already enabled; disable it first")]
    MfaAlreadyEnabled,
    #[error("too many attempts; try again later")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("the code is invalid or has expired")]
    InvalidCode,
    #[error("no such route")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("the service is temporarily unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidCredentials
            | Self::InvalidToken
            | Self::TokenReused
            | Self::SessionExpired => StatusCode::UNAUTHORIZED,
            Self::CsrfRejected | Self::ReauthenticationRequired | Self::EmailNotVerified => {
                StatusCode::FORBIDDEN
            }
            Self::EmailTaken | Self::UsernameTaken | Self::MfaAlreadyEnabled => {
                StatusCode::CONFLICT
            }
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::InvalidCode => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, snake_case `code` clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Validation(_) => "validation_failed",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidToken => "invalid_token",
            Self::TokenReused => "token_reused",
            Self::SessionExpired => "session_expired",
            Self::CsrfRejected => "csrf_rejected",
            Self::ReauthenticationRequired => "reauthentication_required",
            Self::EmailNotVerified => "email_not_verified",
            Self::EmailTaken => "email_taken",
            Self::UsernameTaken => "username_taken",
            Self::MfaAlreadyEnabled => "mfa_already_enabled",
            Self::TooManyAttempts { .. } => "too_many_attempts",
            Self::InvalidCode => "invalid_code",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unavailable => "service_unavailable",
            Self::Internal => "internal_error",
        }
    }

    /// Seconds for a `Retry-After` header, where the answer has one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::TooManyAttempts { retry_after_secs } => Some(*retry_after_secs),
            Self::Unavailable => Some(1),
            _ => None,
        }
    }

    /// Builds a `validation_failed` error for one field.
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::from([(field.to_owned(), reason.into())]))
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::EmailTaken => Self::EmailTaken,
            StoreError::UsernameTaken => Self::UsernameTaken,
            StoreError::Conflict => {
                tracing::warn!("a concurrent update won; the client may retry");
                Self::Unavailable
            }
            StoreError::Unavailable(source) => {
                tracing::error!(error = %source, "storage unavailable");
                Self::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_error_is_4xx_and_codes_are_snake_case() {
        let all = [
            ApiError::MalformedJson,
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::Validation(FieldErrors::new()),
            ApiError::InvalidCredentials,
            ApiError::InvalidToken,
            ApiError::TokenReused,
            ApiError::SessionExpired,
            ApiError::CsrfRejected,
            ApiError::ReauthenticationRequired,
            ApiError::EmailNotVerified,
            ApiError::EmailTaken,
            ApiError::UsernameTaken,
            ApiError::MfaAlreadyEnabled,
            ApiError::TooManyAttempts {
                retry_after_secs: 3,
            },
            ApiError::InvalidCode,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
        ];
        for err in &all {
            assert!(err.status().is_client_error(), "{err:?}");
            assert!(
                err.code()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            );
        }
        assert!(ApiError::Unavailable.status().is_server_error());
        assert_eq!(
            ApiError::TooManyAttempts {
                retry_after_secs: 7
            }
            .retry_after_secs(),
            Some(7)
        );
    }

    #[test]
    fn store_errors_map_to_business_outcomes() {
        // RL-02: a failed condition is a conflict, not a 500.
        assert_eq!(
            ApiError::from(StoreError::EmailTaken).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            ApiError::from(StoreError::UsernameTaken).code(),
            "username_taken"
        );
        let outage = StoreError::Unavailable("throttled".into());
        assert_eq!(
            ApiError::from(outage).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
