//! Sending a signed request with ureq and reading the answer: the body of a success, an
//! [`ErrorAnswer`] otherwise. The caller builds the agent (TLS, timeouts, pooling) with
//! `http_status_as_error(false)`, so error statuses arrive here as answers.

use crate::ErrorAnswer;

/// Why a call gave no successful answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer: connection, TLS, timeout, or the body could not be read.
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    /// AWS answered with an error status.
    #[error(transparent)]
    Answer(#[from] ErrorAnswer),
}

/// Sends `request` and returns the body of a 2xx answer.
///
/// # Errors
/// [`CallError::Transport`] without an answer, [`CallError::Answer`] for a status ≥ 300.
pub fn send(agent: &ureq::Agent, request: http::Request<Vec<u8>>) -> Result<Vec<u8>, CallError> {
    let url = request.uri().to_string();
    let transport = |e: ureq::Error| CallError::Transport {
        url: url.clone(),
        message: e.to_string(),
    };
    let mut response = agent.run(request).map_err(transport)?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_vec().map_err(transport)?;
    if status < 300 {
        Ok(body)
    } else {
        Err(ErrorAnswer::from_response(status, response.headers(), &body).into())
    }
}
