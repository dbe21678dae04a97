//! The registry over REST: list with filters, register, get, unregister, health,
//! dependency chain, compatibility and the summaries.

use actix_web::{HttpRequest, HttpResponse, web};
use aimbus_core::{IntegrationStatus, Registration, Registry, SystemInfo, SystemType};
use serde::Deserialize;
use serde_json::json;

use super::{body_format, read_body, respond};
use crate::Gateway;
use crate::auth::Role;
use crate::problem::Problem;

/// `GET /api/v1/systems` filters; all given must hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListFilter {
    #[serde(rename = "type")]
    system_type: Option<String>,
    capability: Option<String>,
    interface: Option<String>,
    status: Option<IntegrationStatus>,
}

/// A handler's prologue: the caller may read.
fn reader(gateway: &Gateway, request: &HttpRequest) -> Result<(), Problem> {
    gateway.caller(request)?.require(Role::Readonly)
}

pub(crate) async fn list(
    request: HttpRequest,
    filter: web::Query<ListFilter>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    reader(&gateway, &request)?;
    let filter = filter.into_inner();
    let system_type = filter
        .system_type
        .as_deref()
        .map(str::parse::<SystemType>)
        .transpose()?;
    let systems = gateway
        .registry
        .query(move |r| {
            r.systems()
                .filter(|s| system_type.as_ref().is_none_or(|t| &s.system_type == t))
                .filter(|s| {
                    filter
                        .capability
                        .as_ref()
                        .is_none_or(|c| s.capabilities.contains(c))
                })
                .filter(|s| {
                    filter
                        .interface
                        .as_ref()
                        .is_none_or(|i| s.interfaces.contains_key(i))
                })
                .filter(|s| filter.status.is_none_or(|st| s.status == st))
                .cloned()
                .collect::<Vec<SystemInfo>>()
        })
        .await?;
    respond(&gateway.codec, &request, HttpResponse::Ok(), &systems)
}

pub(crate) async fn register(
    request: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    gateway.caller(&request)?.require(Role::Admin)?;
    let format = body_format(&request)?;
    let body = read_body(&request, payload, gateway.max_body_bytes).await?;
    let system: SystemInfo = gateway.codec.decode(format, &body)?;
    let system_id = system.system_id.clone();
    let registration = gateway.registry.register(system.clone()).await?;
    let (mut response, outcome) = match registration {
        Registration::Added => (HttpResponse::Created(), json!("added")),
        Registration::Upgraded { previous_version } => (
            HttpResponse::Ok(),
            json!({"upgraded_from": previous_version}),
        ),
    };
    response.insert_header(("Location", format!("/api/v1/systems/{system_id}")));
    let answer = json!({"system_id": system_id, "registration": outcome, "system": system});
    respond(&gateway.codec, &request, response, &answer)
}

/// The system, or 404.
async fn find(gateway: &Gateway, system_id: String) -> Result<SystemInfo, Problem> {
    let missing = format!("system `{system_id}` is not registered");
    gateway
        .registry
        .query(move |r| r.get(&system_id).cloned())
        .await?
        .ok_or_else(|| Problem::unknown_system(missing))
}

pub(crate) async fn get(
    request: HttpRequest,
    system_id: web::Path<String>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    reader(&gateway, &request)?;
    let system = find(&gateway, system_id.into_inner()).await?;
    respond(&gateway.codec, &request, HttpResponse::Ok(), &system)
}

pub(crate) async fn unregister(
    request: HttpRequest,
    system_id: web::Path<String>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    gateway.caller(&request)?.require(Role::Admin)?;
    let removed = gateway.registry.unregister(&system_id).await?;
    respond(&gateway.codec, &request, HttpResponse::Ok(), &removed)
}

pub(crate) async fn health(
    request: HttpRequest,
    system_id: web::Path<String>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    reader(&gateway, &request)?;
    let system = find(&gateway, system_id.into_inner()).await?;
    let health = json!({
        "system_id": system.system_id,
        "status": system.status,
        "last_health_check": system.last_health_check,
        "performance_metrics": system.performance_metrics,
    });
    respond(&gateway.codec, &request, HttpResponse::Ok(), &health)
}

/// `GET /api/v1/systems/{id}/status-history` bounds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryBounds {
    /// Newest changes first; at most this many (1 to 1000, default 100).
    limit: Option<u32>,
}

/// A system's status changes as every node recorded them, newest first.
pub(crate) async fn status_history(
    request: HttpRequest,
    system_id: web::Path<String>,
    bounds: web::Query<HistoryBounds>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    reader(&gateway, &request)?;
    let limit = bounds.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit {limit}: expected 1 to 1000"
        )));
    }
    let system = find(&gateway, system_id.into_inner()).await?;
    let history: Vec<_> = gateway
        .registry
        .status_history(&system.system_id, limit)
        .await?
        .into_iter()
        .map(|change| {
            json!({
                "node_id": change.node_id,
                "previous": change.previous,
                "status": change.status,
                "reason": change.reason,
                "at": change.at,
            })
        })
        .collect();
    respond(&gateway.codec, &request, HttpResponse::Ok(), &history)
}

/// The bus nodes whose heartbeat is recent, and when each was last seen.
pub(crate) async fn nodes(
    request: HttpRequest,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    reader(&gateway, &request)?;
    let nodes = gateway.registry.nodes().await?;
    respond(&gateway.codec, &request, HttpResponse::Ok(), &nodes)
}

pub(crate) async fn dependency_chain(
    request: HttpRequest,
    system_id: web::Path<String>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    about(request, system_id, gateway, |r, id| r.dependency_chain(id)).await
}

pub(crate) async fn compatibility(
    request: HttpRequest,
    system_id: web::Path<String>,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    about(request, system_id, gateway, |r, id| r.compatibility(id)).await
}

/// Answers a reader with what `query` tells about one system.
async fn about<R, Q>(
    request: HttpRequest,
    system_id: web::Path<String>,
    gateway: web::Data<Gateway>,
    query: Q,
) -> Result<HttpResponse, Problem>
where
    R: serde::Serialize + Send + 'static,
    Q: FnOnce(&Registry, &str) -> Result<R, aimbus_core::Error> + Send + 'static,
{
    reader(&gateway, &request)?;
    let id = system_id.into_inner();
    let answer = gateway.registry.query(move |r| query(r, &id)).await??;
    respond(&gateway.codec, &request, HttpResponse::Ok(), &answer)
}

pub(crate) async fn summary(
    request: HttpRequest,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    view(request, gateway, |r| r.summary()).await
}

pub(crate) async fn integration_summary(
    request: HttpRequest,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    view(request, gateway, |r| r.integration_summary()).await
}

/// Answers a reader with what `query` makes of the whole registry.
async fn view<R, Q>(
    request: HttpRequest,
    gateway: web::Data<Gateway>,
    query: Q,
) -> Result<HttpResponse, Problem>
where
    R: serde::Serialize + Send + 'static,
    Q: FnOnce(&Registry) -> R + Send + 'static,
{
    reader(&gateway, &request)?;
    let answer = gateway.registry.query(query).await?;
    respond(&gateway.codec, &request, HttpResponse::Ok(), &answer)
}
