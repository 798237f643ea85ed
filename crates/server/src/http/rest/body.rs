//! Reading a JSON request body: bounded in size (413), typed (415), well-formed (400).

use bytes::Bytes;
use futures_util::StreamExt;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode, header};

use crate::http::problem::Problem;

/// A body that was read and parsed, or the problem to answer instead.
pub(super) type JsonBody = Result<(serde_json::Value, Bytes), Problem>;

/// Extracts the request body as JSON, never rejecting.
pub(super) fn json_body(
    max: usize,
) -> impl Filter<Extract = (JsonBody,), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::body::stream())
        .then(move |headers: HeaderMap, stream| read(headers, stream, max))
}

fn too_large(max: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "Request body too large",
        format!("the request body is larger than {max} bytes"),
    )
}

async fn read<S, B>(headers: HeaderMap, stream: S, max: usize) -> JsonBody
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: bytes::Buf,
{
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        let essence = kind
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "the request body must be application/json",
            ));
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(too_large(max));
    }
    let mut stream = stream;
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(max));
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|error| {
            Problem::bad_request(
                "bad_body",
                format!("the request body could not be read: {error}"),
            )
        })?;
        while chunk.has_remaining() {
            let part = chunk.chunk();
            if body.len() + part.len() > max {
                return Err(too_large(max));
            }
            body.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    let value = serde_json::from_slice(&body).map_err(|error| {
        Problem::bad_request(
            "malformed_json",
            format!("the request body is not valid JSON: {error}"),
        )
    })?;
    Ok((value, Bytes::from(body)))
}
