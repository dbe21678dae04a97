//! The routes, and what every handler shares: reading a bounded body and answering in
//! the caller's format.

pub(crate) mod messages;
mod ops;
mod systems;

use actix_web::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use aimbus_core::{Codec, Format};
use serde::Serialize;
use tokio_stream::StreamExt;

use crate::problem::{Problem, internal};

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .app_data(web::QueryConfig::default().error_handler(|e, _| bad_input(e)))
        .app_data(web::PathConfig::default().error_handler(|e, _| bad_input(e)))
        .service(
            web::scope("/api/v1")
                .service(resource("/messages").route(web::post().to(messages::post)))
                .service(
                    resource("/systems")
                        .route(web::get().to(systems::list))
                        .route(web::post().to(systems::register)),
                )
                .service(
                    resource("/systems/{system_id}")
                        .route(web::get().to(systems::get))
                        .route(web::delete().to(systems::unregister)),
                )
                .service(
                    resource("/systems/{system_id}/health").route(web::get().to(systems::health)),
                )
                .service(
                    resource("/systems/{system_id}/dependencies")
                        .route(web::get().to(systems::dependency_chain)),
                )
                .service(
                    resource("/systems/{system_id}/compatibility")
                        .route(web::get().to(systems::compatibility)),
                )
                .service(
                    resource("/systems/{system_id}/status-history")
                        .route(web::get().to(systems::status_history)),
                )
                .service(resource("/nodes").route(web::get().to(systems::nodes)))
                .service(resource("/registry/summary").route(web::get().to(systems::summary)))
                .service(
                    resource("/integration/summary")
                        .route(web::get().to(systems::integration_summary)),
                )
                .service(resource("/openapi.json").route(web::get().to(ops::openapi))),
        )
        .service(resource("/healthz").route(web::get().to(ops::healthz)))
        .service(resource("/readyz").route(web::get().to(ops::readyz)))
        .service(resource("/metrics").route(web::get().to(ops::metrics)))
        .default_service(web::to(ops::not_found));
}

/// A resource that answers a method it does not serve with a 405 problem.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(ops::method_not_allowed))
}

fn bad_input(error: impl std::fmt::Display) -> actix_web::Error {
    Problem::bad_request(error.to_string()).into()
}

/// The body, refused with 413 as soon as it is known to exceed `limit` (by its
/// Content-Length, or while it streams in), so an oversized body is never buffered.
pub(crate) async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, Problem> {
    let too_large = |size: String| {
        Problem::too_large(format!(
            "the body is {size} bytes; the limit is {limit} bytes"
        ))
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(declared) = declared.filter(|d| *d > limit) {
        return Err(too_large(declared.to_string()));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| Problem::bad_request(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(format!("more than {limit}")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The format the body's Content-Type names (415 for any other, or none).
pub(crate) fn body_format(request: &HttpRequest) -> Result<Format, Problem> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Problem::from(aimbus_core::Error::UnsupportedContentType("(none)".into()))
        })?;
    Ok(Format::from_content_type(content_type)?)
}

/// MessagePack when the caller's Accept names it, JSON otherwise.
pub(crate) fn answer_format(request: &HttpRequest) -> Format {
    let accept = request
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/msgpack") || accept.contains("application/x-msgpack") {
        Format::MessagePack
    } else {
        Format::Json
    }
}

/// `value` encoded as the caller asked.
pub(crate) fn respond<T: Serialize>(
    codec: &Codec,
    request: &HttpRequest,
    mut response: actix_web::HttpResponseBuilder,
    value: &T,
) -> Result<HttpResponse, Problem> {
    let format = answer_format(request);
    let body = codec
        .encode(format, value)
        .map_err(|e| internal(e.to_string()))?;
    Ok(response
        .insert_header((CONTENT_TYPE, format.content_type()))
        .body(body))
}
