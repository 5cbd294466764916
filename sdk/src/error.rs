use std::fmt;

/// Everything that can go wrong calling the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway refused the request. `code` is the stable API error code (for example
    /// `INSUFFICIENT_BALANCE`); `request_id` identifies the request in the gateway's logs.
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The stable error code.
        code: String,
        /// A human-readable explanation.
        message: String,
        /// The gateway's request id.
        request_id: Option<String>,
    },
    /// The gateway could not be reached, or did not answer in time, after every retry.
    #[error("network error: {0}")]
    Network(String),
    /// The gateway answered something this SDK cannot read.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The request could not be built (for example a bad base URL).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl Error {
    /// The gateway's error code, when the gateway refused the request.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether retrying the same request may succeed (network trouble or a 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Network(_) => true,
            Error::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

pub(crate) struct Redacted<'a>(pub &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0.len())
    }
}
