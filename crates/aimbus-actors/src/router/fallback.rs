//! The fallback actor, as the seed's `get_fallback_system`: when the chosen system's
//! breaker is open, deliver to another system instead, and say when the breaker will
//! half-open if there is none.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use aimbus_core::{IntegrationMessage, IntegrationStatus, SystemInfo};

use super::Routed;
use super::attempt::{Attempt, Instances};
use super::view::RoutingView;
use crate::Error;
use crate::system_actor::SystemDirectory;
use crate::transport::DeliveryMode;

/// Systems that may stand in for `failed`, best first: other instances of its type, then
/// systems compatible with it by the seed's rule (a shared interface kind and a shared
/// capability). Only systems that take traffic, whose breaker is not open, and that do
/// not depend on `failed` (directly or not) qualify; healthy ones come before degraded.
pub fn fallback_candidates<'v>(
    view: &'v RoutingView,
    failed: &SystemInfo,
    breaker_open: impl Fn(&str) -> bool,
) -> Vec<&'v Arc<SystemInfo>> {
    let mut candidates: Vec<(u8, u8, &Arc<SystemInfo>)> = view
        .systems()
        .filter(|s| s.system_id != failed.system_id)
        .filter(|s| s.status.takes_traffic())
        .filter(|s| !breaker_open(&s.system_id))
        .filter(|s| !view.depends_on(&s.system_id, &failed.system_id))
        .filter_map(|s| {
            let tier = if s.system_type == failed.system_type {
                0
            } else if failed.is_compatible_with(s) {
                1
            } else {
                return None;
            };
            let degraded = u8::from(s.status == IntegrationStatus::Degraded);
            Some((tier, degraded, s))
        })
        .collect();
    candidates.sort_by(|a, b| (a.0, a.1, &a.2.system_id).cmp(&(b.0, b.1, &b.2.system_id)));
    candidates.into_iter().map(|(_, _, s)| s).collect()
}

pub struct FallbackActor {
    pub(super) view: Arc<RwLock<RoutingView>>,
    pub(super) instances: Instances,
    pub(super) directory: SystemDirectory,
    /// Stand-in systems tried, at most.
    pub(super) attempts: u32,
    pub(super) breakers: bool,
    pub(super) mailbox_capacity: usize,
}

impl Actor for FallbackActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

/// Deliver `message`, whose chosen system `failed` has its breaker open, elsewhere.
#[derive(Debug, Message)]
#[rtype(result = "Result<Routed, Error>")]
pub struct Fallback {
    pub message: Arc<IntegrationMessage>,
    pub failed: String,
    /// When `failed`'s breaker half-opens.
    pub retry_after: Option<Duration>,
    /// Time allowed for each stand-in's answer.
    pub timeout: Duration,
    pub mode: DeliveryMode,
    /// The route's trace, the parent of the stand-ins' attempts.
    pub trace: aimbus_telemetry::Trace,
}

impl Handler<Fallback> for FallbackActor {
    type Result = ResponseFuture<Result<Routed, Error>>;

    fn handle(&mut self, request: Fallback, _: &mut Context<Self>) -> Self::Result {
        let candidates: Vec<Arc<super::attempt::Instance>> = {
            let view = self.view.read().expect("view lock");
            let instances = self.instances.read().expect("instances lock");
            match view.get(&request.failed) {
                Some(failed) => fallback_candidates(&view, failed, |id| {
                    instances.get(id).is_some_and(|i| i.breaker_open())
                })
                .into_iter()
                .filter_map(|s| instances.get(&s.system_id).cloned())
                .take(self.attempts as usize)
                .collect(),
                None => Vec::new(),
            }
        };
        let directory = self.directory.clone();
        let (timeout, mode, breakers) = (request.timeout, request.mode, self.breakers);
        Box::pin(async move {
            let mut last = None;
            for (tried, instance) in candidates.into_iter().enumerate() {
                let Ok(attempt) = Attempt::acquire(&instance, breakers) else {
                    continue;
                };
                let number = tried as u32 + 1;
                let route = &request.trace;
                match attempt
                    .run(
                        &directory,
                        request.message.clone(),
                        timeout,
                        mode,
                        (number, route),
                    )
                    .await
                {
                    Ok(reply) => {
                        return Ok(Routed {
                            reply,
                            served_by: Arc::clone(&instance.id),
                            attempts: tried as u32 + 1,
                            fallback: true,
                            cached: false,
                        });
                    }
                    Err(error) => last = Some(error),
                }
            }
            let reason = match last {
                Some(error) => {
                    format!("circuit breaker open and every fallback failed (last: {error})")
                }
                None => "circuit breaker open and no fallback system is available".to_owned(),
            };
            Err(Error::Unavailable {
                target: request.failed,
                reason,
                retry_after: request.retry_after,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aimbus_core::RegistryEvent;
    use serde_json::json;

    fn system(
        id: &str,
        system_type: &str,
        status: &str,
        caps: &[&str],
        ifaces: &[&str],
        deps: &[&str],
    ) -> SystemInfo {
        let interfaces: serde_json::Map<String, serde_json::Value> = ifaces
            .iter()
            .map(|k| {
                (
                    (*k).to_owned(),
                    json!(if *k == "rest_api" {
                        "http://x:1"
                    } else {
                        "x:1"
                    }),
                )
            })
            .collect();
        serde_json::from_value(json!({
            "system_id": id, "system_type": system_type, "name": id, "version": "1",
            "status": status, "capabilities": caps, "interfaces": interfaces, "dependencies": deps,
        }))
        .unwrap()
    }

    /// Data-driven: (systems, open breakers, failed system, expected candidates in order).
    #[test]
    fn fallback_choice_table() {
        type Row<'a> = (&'a str, Vec<SystemInfo>, &'a [&'a str], &'a [&'a str]);
        let failed = || {
            system(
                "hhni_001",
                "hhni",
                "healthy",
                &["search"],
                &["rest_api"],
                &[],
            )
        };
        let rows: Vec<Row> = vec![
            (
                "another instance of the same type first, then a compatible system",
                vec![
                    system("seg_001", "seg", "healthy", &["search"], &["rest_api"], &[]),
                    system("hhni_002", "hhni", "healthy", &[], &["grpc"], &[]),
                ],
                &[],
                &["hhni_002", "seg_001"],
            ),
            (
                "healthy before degraded within a tier",
                vec![
                    system("hhni_002", "hhni", "degraded", &[], &["rest_api"], &[]),
                    system("hhni_003", "hhni", "healthy", &[], &["rest_api"], &[]),
                ],
                &[],
                &["hhni_003", "hhni_002"],
            ),
            (
                "never one whose breaker is open, nor one that is down",
                vec![
                    system("hhni_002", "hhni", "healthy", &[], &["rest_api"], &[]),
                    system("hhni_003", "hhni", "unhealthy", &[], &["rest_api"], &[]),
                    system("hhni_004", "hhni", "failed", &[], &["rest_api"], &[]),
                ],
                &["hhni_002"],
                &[],
            ),
            (
                "never a system that depends on the failed one, even through another",
                vec![
                    system(
                        "seg_001",
                        "seg",
                        "healthy",
                        &["search"],
                        &["rest_api"],
                        &["hhni_001"],
                    ),
                    system(
                        "apoe_001",
                        "apoe",
                        "healthy",
                        &["search"],
                        &["rest_api"],
                        &["seg_001"],
                    ),
                    system("vif_001", "vif", "healthy", &["search"], &["rest_api"], &[]),
                ],
                &[],
                &["vif_001"],
            ),
            (
                "a shared interface alone or a shared capability alone is not compatible",
                vec![
                    system("seg_001", "seg", "healthy", &["other"], &["rest_api"], &[]),
                    system("vif_001", "vif", "healthy", &["search"], &["grpc"], &[]),
                ],
                &[],
                &[],
            ),
        ];
        for (case, others, open, expected) in rows {
            let mut systems = vec![failed()];
            systems.extend(others);
            let view = RoutingView::from_snapshot(systems);
            let got: Vec<&str> = fallback_candidates(&view, &failed(), |id| open.contains(&id))
                .into_iter()
                .map(|s| s.system_id.as_str())
                .collect();
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn the_view_follows_registry_events() {
        let mut view = RoutingView::from_snapshot(vec![system(
            "hhni_001",
            "hhni",
            "healthy",
            &[],
            &["rest_api"],
            &[],
        )]);
        view.apply(&RegistryEvent::SystemRegistered {
            system: system("hhni_002", "hhni", "healthy", &[], &["rest_api"], &[]),
        });
        assert_eq!(view.resolve("hhni").count(), 2);
        view.apply(&RegistryEvent::StatusUpdate {
            system_id: "hhni_002".into(),
            previous: IntegrationStatus::Healthy,
            status: IntegrationStatus::Unhealthy,
            reason: "test".into(),
            at: chrono::Utc::now(),
        });
        assert_eq!(
            view.get("hhni_002").unwrap().status,
            IntegrationStatus::Unhealthy
        );
        view.apply(&RegistryEvent::SystemUnregistered {
            system_id: "hhni_001".into(),
        });
        assert_eq!(view.resolve("hhni").count(), 1);
        assert_eq!(
            view.resolve("hhni_002").count(),
            1,
            "an id resolves to its system"
        );
        assert_eq!(view.resolve("nothing").count(), 0);
    }
}
