//! API errors: a stable kind, the errno the kernel would have returned for the same
//! request (so `rvsadm` can print libipvs's exact text), the index of the failing
//! command in a batch, and a message for people.

use rvs_core::{ConfigError, CoreError};
use serde::{Deserialize, Serialize};

/// What went wrong, in a form clients can branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request body or a path is malformed (HTTP 400).
    BadRequest,
    /// A value is out of range or a combination is refused (HTTP 422).
    Invalid,
    /// Missing or wrong bearer token (HTTP 401).
    Unauthorized,
    /// No such path or method (HTTP 404/405).
    NotFound,
    /// The service exists already (EEXIST, HTTP 409).
    ServiceExists,
    /// The service does not exist (ESRCH, HTTP 404).
    NoService,
    /// The real server exists already (EEXIST, HTTP 409).
    ServerExists,
    /// The real server does not exist (ENOENT, HTTP 404).
    NoServer,
    /// Unknown scheduler or persistence engine (ENOENT, HTTP 422).
    SchedulerNotFound,
    /// The daemon could not persist the change; nothing was applied (HTTP 500).
    Persist,
    /// Something rvs does not do yet (HTTP 501).
    NotImplemented,
    /// That sync daemon runs already (EEXIST, HTTP 409).
    DaemonRunning,
    /// No sync daemon of that role runs (ESRCH, HTTP 404).
    NoDaemon,
}

impl ErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NotFound
            | ErrorKind::NoService
            | ErrorKind::NoServer
            | ErrorKind::NoDaemon => 404,
            ErrorKind::ServiceExists | ErrorKind::ServerExists | ErrorKind::DaemonRunning => 409,
            ErrorKind::Invalid | ErrorKind::SchedulerNotFound => 422,
            ErrorKind::Persist => 500,
            ErrorKind::NotImplemented => 501,
        }
    }
}

/// An error answer of the admin API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    /// The errno name the kernel returns for the same request (`EEXIST`, `ESRCH`,
    /// `ENOENT`, `EINVAL`, `ERANGE`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    /// Index of the failing command within the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            errno: None,
            index: None,
            message: message.into(),
        }
    }

    pub fn with_errno(mut self, errno: &str) -> Self {
        self.errno = Some(errno.to_string());
        self
    }

    pub fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::Invalid, message).with_errno("EINVAL")
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        let message = e.to_string();
        match e {
            ConfigError::UnknownScheduler(_) | ConfigError::UnknownPersistenceEngine(_) => {
                ApiError::new(ErrorKind::SchedulerNotFound, message).with_errno("ENOENT")
            }
            // ip_vs_ctl.c ip_vs_check_dest/__ip_vs_update_dest: l_threshold above
            // u_threshold is -ERANGE.
            ConfigError::Thresholds { .. } => {
                ApiError::new(ErrorKind::Invalid, message).with_errno("ERANGE")
            }
            _ => ApiError::invalid(message),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let message = e.to_string();
        match e {
            CoreError::Config(c) => c.into(),
            CoreError::ServiceExists(_) => {
                ApiError::new(ErrorKind::ServiceExists, message).with_errno("EEXIST")
            }
            CoreError::NoService(_) => {
                ApiError::new(ErrorKind::NoService, message).with_errno("ESRCH")
            }
            CoreError::DestExists => {
                ApiError::new(ErrorKind::ServerExists, message).with_errno("EEXIST")
            }
            CoreError::NoDest => ApiError::new(ErrorKind::NoServer, message).with_errno("ENOENT"),
            CoreError::KeyChanged => ApiError::invalid(message),
            CoreError::Mark(
                rvs_core::MarkError::Exists(_) | rvs_core::MarkError::Overlap { .. },
            ) => ApiError::new(ErrorKind::Invalid, message).with_errno("EEXIST"),
            CoreError::Mark(rvs_core::MarkError::NoRule(_)) => {
                ApiError::new(ErrorKind::Invalid, message).with_errno("ENOENT")
            }
            CoreError::Mark(_) => ApiError::invalid(message),
        }
    }
}
