//! Probes, metrics, the OpenAPI document and the answers for unknown routes.

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::Gateway;
use crate::problem::Problem;

/// The process serves.
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready to route: the registry answers and, when the bus runs with RabbitMQ, the
/// broker is connected.
pub(crate) async fn readyz(gateway: web::Data<Gateway>) -> HttpResponse {
    let registry = gateway.registry.query(|r| r.len()).await.ok();
    let broker = gateway.bridge.as_ref().map(|b| b.is_connected());
    let ready = registry.is_some() && broker != Some(false);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(json!({
        "ready": ready,
        "registry": {"loaded": registry.is_some(), "systems": registry},
        "broker": match broker {
            None => "not used",
            Some(true) => "connected",
            Some(false) => "disconnected",
        },
    }))
}

pub(crate) async fn metrics(gateway: web::Data<Gateway>) -> Result<HttpResponse, Problem> {
    let handle = gateway
        .metrics
        .as_ref()
        .ok_or_else(|| Problem::not_found("metrics are disabled (monitoring.enable_metrics)"))?;
    crate::metrics::sample_process();
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/plain; version=0.0.4"))
        .body(handle.render()))
}

pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(crate::openapi::DOCUMENT)
}

pub(crate) async fn not_found(request: HttpRequest) -> Result<HttpResponse, Problem> {
    Err(Problem::not_found(format!(
        "no route for {}",
        request.path()
    )))
}

pub(crate) async fn method_not_allowed(request: HttpRequest) -> Result<HttpResponse, Problem> {
    Err(Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "The route does not take this method",
        format!("{} does not take {}", request.path(), request.method()),
    ))
}
