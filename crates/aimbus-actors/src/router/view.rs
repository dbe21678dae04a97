//! The router's picture of the registry: kept current from the registry's event stream,
//! so resolving a target never asks the registry actor.

use std::collections::BTreeSet;
use std::sync::Arc;

use aimbus_core::{RegistryEvent, SystemInfo};

#[derive(Debug, Default, Clone)]
pub struct RoutingView {
    systems: crate::FastMap<Arc<SystemInfo>>,
    /// Type name → ids of its instances, ordered so balancing sees a stable order.
    by_type: crate::FastMap<BTreeSet<String>>,
}

impl RoutingView {
    pub fn from_snapshot(systems: Vec<SystemInfo>) -> RoutingView {
        let mut view = RoutingView::default();
        for system in systems {
            view.insert(system);
        }
        view
    }

    fn insert(&mut self, system: SystemInfo) {
        self.remove(&system.system_id);
        self.by_type
            .entry(system.system_type.to_string())
            .or_default()
            .insert(system.system_id.clone());
        self.systems
            .insert(system.system_id.clone(), Arc::new(system));
    }

    fn remove(&mut self, system_id: &str) {
        if let Some(old) = self.systems.remove(system_id) {
            let type_name = old.system_type.to_string();
            if let Some(ids) = self.by_type.get_mut(&type_name) {
                ids.remove(system_id);
                if ids.is_empty() {
                    self.by_type.remove(&type_name);
                }
            }
        }
    }

    pub fn apply(&mut self, event: &RegistryEvent) {
        match event {
            RegistryEvent::SystemRegistered { system }
            | RegistryEvent::SystemUpdated { system, .. } => self.insert(system.clone()),
            RegistryEvent::SystemUnregistered { system_id } => self.remove(system_id),
            RegistryEvent::StatusUpdate {
                system_id, status, ..
            } => {
                if let Some(system) = self.systems.get_mut(system_id) {
                    Arc::make_mut(system).status = *status;
                }
            }
        }
    }

    pub fn get(&self, system_id: &str) -> Option<&Arc<SystemInfo>> {
        self.systems.get(system_id)
    }

    pub fn systems(&self) -> impl Iterator<Item = &Arc<SystemInfo>> {
        self.systems.values()
    }

    /// The systems a target names: the one system with that id, or every instance of the
    /// type with that name. Empty when it names neither.
    pub fn resolve<'v>(&'v self, target: &str) -> impl Iterator<Item = &'v Arc<SystemInfo>> {
        let by_id = self.systems.get(target);
        let by_type = by_id.is_none().then(|| self.by_type.get(target)).flatten();
        by_id.into_iter().chain(
            by_type
                .into_iter()
                .flatten()
                .filter_map(|id| self.systems.get(id)),
        )
    }

    /// Whether `system_id` depends on `on`, directly or through others.
    pub fn depends_on(&self, system_id: &str, on: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut pending = vec![system_id];
        while let Some(id) = pending.pop() {
            for dependency in self.systems.get(id).map_or(&[][..], |s| &s.dependencies) {
                if dependency == on {
                    return true;
                }
                if seen.insert(dependency.as_str()) {
                    pending.push(dependency);
                }
            }
        }
        false
    }
}
