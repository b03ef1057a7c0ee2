//! A small blocking client of the admin API over the Unix socket, for rvsadm and the
//! tests: one HTTP/1.1 request per connection (hyper), JSON in and out.
//!
//! Invariant: an answer is either the typed success body or the daemon's
//! `ApiError`; anything else (no daemon, a broken answer) is a `ClientError` that
//! says which socket was tried.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rvs_api::{ApiError, ErrorBody};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to rvsd at {path}: {source} (is rvsd running?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to rvsd at {path}: {message}")]
    Protocol { path: PathBuf, message: String },
}

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn protocol(&self, message: impl ToString) -> ClientError {
        ClientError::Protocol {
            path: self.socket.clone(),
            message: message.to_string(),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Result<T, ApiError>, ClientError> {
        self.request("GET", path, None)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Result<T, ApiError>, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| self.protocol(e))?;
        self.request("POST", path, Some(bytes))
    }

    pub fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Result<T, ApiError>, ClientError> {
        self.request("DELETE", path, None)
    }

    fn request<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Result<T, ApiError>, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| self.protocol(e))?;
        let (status, bytes) = rt.block_on(self.exchange(method, path, body))?;
        if (200..300).contains(&status) {
            serde_json::from_slice(&bytes)
                .map(Ok)
                .map_err(|e| self.protocol(format!("bad answer: {e}")))
        } else {
            let err: ErrorBody = serde_json::from_slice(&bytes).map_err(|_| {
                self.protocol(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes).trim()
                ))
            })?;
            Ok(Err(err.error))
        }
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.protocol(e))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "rvsd")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.protocol(e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.protocol(e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.protocol(e))?
            .to_bytes();
        Ok((status, bytes))
    }
}
