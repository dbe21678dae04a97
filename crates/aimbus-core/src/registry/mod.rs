//! The registry as plain data: systems, their dependency graph in both directions, and the
//! capability, interface, type and version indexes the seed's `AdvancedSystemRegistry`
//! keeps. No I/O and no actors: the registry actor owns one, tests use one directly.

mod summary;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

pub use summary::{Compatibility, IntegrationSummary, RegistrySummary, RequestTotals};

use crate::{
    Error, HealthCheckResult, IntegrationStatus, PerformanceMetrics, SystemInfo, SystemType,
};

/// When a system entered the registry and when its entry last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemMetadata {
    pub registered_at: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
}

/// A registration checked against the registry, with the entry it will become: see
/// [`Registry::plan_registration`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRegistration {
    pub info: SystemInfo,
    pub metadata: SystemMetadata,
    /// Every version the id will have had, oldest first.
    pub versions: Vec<String>,
    /// The version it replaces, for an upgrade.
    pub previous_version: Option<String>,
}

/// What [`Registry::register`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    Added,
    /// The id was registered at another version; the entry now holds the new one.
    Upgraded {
        previous_version: String,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    info: SystemInfo,
    metadata: SystemMetadata,
}

#[derive(Debug, Clone)]
pub struct Registry {
    systems: BTreeMap<String, Entry>,
    /// Reverse edges: who depends on an id. Kept for ids that were unregistered while
    /// others still depend on them, so re-registering one cannot close a cycle unseen.
    dependents: HashMap<String, BTreeSet<String>>,
    dependency_edges: usize,
    type_index: HashMap<SystemType, BTreeSet<String>>,
    capability_index: BTreeMap<String, BTreeSet<String>>,
    interface_index: BTreeMap<String, BTreeSet<String>>,
    /// Every version each registered id has had, oldest first.
    version_tracker: HashMap<String, Vec<String>>,
    last_changed: DateTime<Utc>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry {
            systems: BTreeMap::new(),
            dependents: HashMap::new(),
            dependency_edges: 0,
            type_index: HashMap::new(),
            capability_index: BTreeMap::new(),
            interface_index: BTreeMap::new(),
            version_tracker: HashMap::new(),
            last_changed: Utc::now(),
        }
    }

    /// Validates and registers a system. The same id at the same version is a
    /// [`Error::DuplicateSystem`]; at another version it replaces the entry (an upgrade).
    /// Every dependency must already be registered, and the new edges must not close a
    /// cycle. O((d + c + i) log n) for d dependencies, c capabilities and i interfaces,
    /// plus, only when others already depend on this id, one search of its ancestors.
    pub fn register(&mut self, info: SystemInfo) -> Result<Registration, Error> {
        let planned = self.plan_registration(info)?;
        Ok(self.commit_registration(planned))
    }

    /// Checks a registration without changing anything, and says what it will write: a
    /// durable registry commits the plan to its store first, then here with
    /// [`Registry::commit_registration`], so memory never holds what the store does not.
    pub fn plan_registration(&self, info: SystemInfo) -> Result<PlannedRegistration, Error> {
        info.validate()?;
        let id = &info.system_id;
        let existing = self.systems.get(id);
        if let Some(entry) = existing {
            if entry.info.version == info.version {
                return Err(Error::DuplicateSystem {
                    system_id: id.clone(),
                    version: info.version,
                });
            }
        }
        for dependency in &info.dependencies {
            if dependency == id {
                return Err(Error::DependencyCycle {
                    cycle: vec![id.clone(), id.clone()],
                });
            }
            if !self.systems.contains_key(dependency) {
                return Err(Error::UnknownDependency {
                    system_id: id.clone(),
                    dependency: dependency.clone(),
                });
            }
        }
        // A cycle through `id` needs someone to depend on it already.
        if self.dependents.get(id).is_some_and(|d| !d.is_empty()) {
            if let Some(cycle) = self.path_to(&info.dependencies, id) {
                return Err(Error::DependencyCycle { cycle });
            }
        }
        // Whole microseconds: what a store keeps, so a restored entry equals this one.
        let now = Utc::now().trunc_subsecs(6);
        let mut versions = self.version_history(id).to_vec();
        if !versions.contains(&info.version) {
            versions.push(info.version.clone());
        }
        Ok(PlannedRegistration {
            previous_version: existing.map(|e| e.info.version.clone()),
            metadata: SystemMetadata {
                registered_at: existing.map_or(now, |e| e.metadata.registered_at),
                last_updated: now,
            },
            versions,
            info,
        })
    }

    /// Applies a plan made by [`Registry::plan_registration`] against this same state.
    pub fn commit_registration(&mut self, planned: PlannedRegistration) -> Registration {
        let PlannedRegistration {
            info,
            metadata,
            versions,
            previous_version,
        } = planned;
        self.restore(info, metadata, versions);
        match previous_version {
            Some(previous_version) => Registration::Upgraded { previous_version },
            None => Registration::Added,
        }
    }

    /// Puts a system in as a store holds it, replacing any entry of that id, without the
    /// checks of [`Registry::register`]: what the store holds was checked when it was
    /// written (here or on another node), and a restart must restore it whole even where a
    /// dependency has since been unregistered.
    pub fn restore(&mut self, info: SystemInfo, metadata: SystemMetadata, versions: Vec<String>) {
        let id = info.system_id.clone();
        if let Some(old) = self.systems.remove(&id) {
            self.unindex(&old.info);
        }
        self.index(&info);
        self.version_tracker.insert(id.clone(), versions);
        self.last_changed = metadata.last_updated.max(self.last_changed);
        self.systems.insert(id, Entry { info, metadata });
    }

    /// Removes a system from the registry and every index. Systems that depend on it stay
    /// registered; their dependency on it is now unmet (see [`Registry::unmet_dependencies`]).
    pub fn unregister(&mut self, system_id: &str) -> Result<SystemInfo, Error> {
        let entry = self
            .systems
            .remove(system_id)
            .ok_or_else(|| Error::UnknownSystem(system_id.to_owned()))?;
        self.unindex(&entry.info);
        if self
            .dependents
            .get(system_id)
            .is_some_and(BTreeSet::is_empty)
        {
            self.dependents.remove(system_id);
        }
        self.version_tracker.remove(system_id);
        self.last_changed = Utc::now();
        Ok(entry.info)
    }

    fn index(&mut self, info: &SystemInfo) {
        let id = &info.system_id;
        for dependency in &info.dependencies {
            self.dependents
                .entry(dependency.clone())
                .or_default()
                .insert(id.clone());
        }
        self.dependency_edges += info.dependencies.len();
        self.type_index
            .entry(info.system_type.clone())
            .or_default()
            .insert(id.clone());
        for capability in &info.capabilities {
            insert(&mut self.capability_index, capability, id);
        }
        for kind in info.interfaces.keys() {
            insert(&mut self.interface_index, kind, id);
        }
    }

    fn unindex(&mut self, info: &SystemInfo) {
        let id = &info.system_id;
        for dependency in &info.dependencies {
            if let Some(set) = self.dependents.get_mut(dependency) {
                set.remove(id);
                if set.is_empty() && !self.systems.contains_key(dependency) {
                    self.dependents.remove(dependency);
                }
            }
        }
        self.dependency_edges -= info.dependencies.len();
        if let Some(set) = self.type_index.get_mut(&info.system_type) {
            set.remove(id);
            if set.is_empty() {
                self.type_index.remove(&info.system_type);
            }
        }
        for capability in &info.capabilities {
            remove(&mut self.capability_index, capability, id);
        }
        for kind in info.interfaces.keys() {
            remove(&mut self.interface_index, kind, id);
        }
    }

    /// A dependency path from one of `starts` to `target`, as `target -> start -> … -> target`.
    fn path_to(&self, starts: &[String], target: &str) -> Option<Vec<String>> {
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut stack: Vec<&str> = Vec::new();
        for start in starts {
            if parent.insert(start, target).is_none() {
                stack.push(start);
            }
        }
        while let Some(node) = stack.pop() {
            if node == target {
                let mut cycle = vec![target.to_owned()];
                let mut at = parent[node];
                while at != target {
                    cycle.push(at.to_owned());
                    at = parent[at];
                }
                cycle.push(target.to_owned());
                // Walked backwards from target; a cycle reads forwards.
                cycle.reverse();
                return Some(cycle);
            }
            for next in self.dependencies(node) {
                if !parent.contains_key(next.as_str()) {
                    parent.insert(next, node);
                    stack.push(next);
                }
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.systems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.systems.is_empty()
    }

    pub fn contains(&self, system_id: &str) -> bool {
        self.systems.contains_key(system_id)
    }

    pub fn get(&self, system_id: &str) -> Option<&SystemInfo> {
        self.systems.get(system_id).map(|e| &e.info)
    }

    pub fn metadata(&self, system_id: &str) -> Option<&SystemMetadata> {
        self.systems.get(system_id).map(|e| &e.metadata)
    }

    /// All systems, ordered by id.
    pub fn systems(&self) -> impl Iterator<Item = &SystemInfo> {
        self.systems.values().map(|e| &e.info)
    }

    pub fn by_type(&self, system_type: &SystemType) -> Vec<&SystemInfo> {
        self.members(self.type_index.get(system_type))
    }

    pub fn by_capability(&self, capability: &str) -> Vec<&SystemInfo> {
        self.members(self.capability_index.get(capability))
    }

    pub fn by_interface(&self, interface_kind: &str) -> Vec<&SystemInfo> {
        self.members(self.interface_index.get(interface_kind))
    }

    fn members(&self, ids: Option<&BTreeSet<String>>) -> Vec<&SystemInfo> {
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.get(id))
            .collect()
    }

    /// The ids a system depends on (empty for an unknown id).
    pub fn dependencies(&self, system_id: &str) -> &[String] {
        self.get(system_id).map_or(&[], |s| &s.dependencies)
    }

    /// The registered systems that depend on `system_id`, ordered by id.
    pub fn dependents(&self, system_id: &str) -> Vec<&str> {
        self.dependents
            .get(system_id)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// Dependencies of a registered system that are not registered (any more).
    pub fn unmet_dependencies(&self, system_id: &str) -> Vec<&str> {
        self.dependencies(system_id)
            .iter()
            .filter(|d| !self.contains(d))
            .map(String::as_str)
            .collect()
    }

    /// Every system `system_id` needs, directly or not, then itself: each system comes
    /// after all of its dependencies, so the list is a valid start-up order. Unmet
    /// dependencies are listed too (as leaves). O(a + e) for a ancestors and their e edges.
    pub fn dependency_chain(&self, system_id: &str) -> Result<Vec<String>, Error> {
        if !self.contains(system_id) {
            return Err(Error::UnknownSystem(system_id.to_owned()));
        }
        #[derive(PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        let mut marks: HashMap<&str, Mark> = HashMap::from([(system_id, Mark::Visiting)]);
        let mut chain = Vec::new();
        // Depth-first; each frame holds its node's dependencies and which one comes next,
        // so every node is looked up once.
        let mut stack: Vec<(&str, std::slice::Iter<'_, String>)> =
            vec![(system_id, self.dependencies(system_id).iter())];
        while let Some((node, pending)) = stack.last_mut() {
            let node = *node;
            let Some(dependency) = pending.next() else {
                stack.pop();
                marks.insert(node, Mark::Done);
                chain.push(node.to_owned());
                continue;
            };
            match marks.get(dependency.as_str()) {
                None => {
                    marks.insert(dependency, Mark::Visiting);
                    stack.push((dependency, self.dependencies(dependency).iter()));
                }
                // Registration refuses cycles; this guards against ever looping.
                Some(Mark::Visiting) => {
                    let start = stack.iter().position(|(n, _)| n == dependency);
                    let mut cycle: Vec<String> = stack[start.unwrap_or(0)..]
                        .iter()
                        .map(|(n, _)| (*n).to_owned())
                        .collect();
                    cycle.push(dependency.clone());
                    return Err(Error::DependencyCycle { cycle });
                }
                Some(Mark::Done) => {}
            }
        }
        Ok(chain)
    }

    /// Systems that depend on a registered system offering `capability`, ordered by id.
    /// O(p + r log r) for p providers and r results, instead of the seed's scan of every
    /// dependency edge.
    pub fn systems_requiring_capability(&self, capability: &str) -> Vec<String> {
        let requiring: BTreeSet<&str> = self
            .capability_index
            .get(capability)
            .into_iter()
            .flatten()
            .flat_map(|provider| self.dependents(provider))
            .collect();
        requiring.into_iter().map(str::to_owned).collect()
    }

    /// Every version the system has been registered with, oldest first.
    pub fn version_history(&self, system_id: &str) -> &[String] {
        self.version_tracker
            .get(system_id)
            .map_or(&[], Vec::as_slice)
    }

    /// Sets a system's status; returns the previous one.
    pub fn set_status(
        &mut self,
        system_id: &str,
        status: IntegrationStatus,
    ) -> Result<IntegrationStatus, Error> {
        let entry = self.entry_mut(system_id)?;
        Ok(std::mem::replace(&mut entry.info.status, status))
    }

    /// Replaces a system's performance metrics with those its router measured.
    pub fn set_performance_metrics(
        &mut self,
        system_id: &str,
        metrics: PerformanceMetrics,
    ) -> Result<(), Error> {
        self.entry_mut(system_id)?.info.performance_metrics = metrics;
        Ok(())
    }

    /// Takes a health check's status and time as the system's own; returns the previous
    /// status.
    pub fn apply_health_check(
        &mut self,
        result: &HealthCheckResult,
    ) -> Result<IntegrationStatus, Error> {
        let entry = self.entry_mut(&result.system_id)?;
        entry.info.last_health_check = Some(result.timestamp);
        Ok(std::mem::replace(&mut entry.info.status, result.status))
    }

    fn entry_mut(&mut self, system_id: &str) -> Result<&mut Entry, Error> {
        let entry = self
            .systems
            .get_mut(system_id)
            .ok_or_else(|| Error::UnknownSystem(system_id.to_owned()))?;
        let now = Utc::now();
        entry.metadata.last_updated = now;
        self.last_changed = now;
        Ok(entry)
    }
}

fn insert(index: &mut BTreeMap<String, BTreeSet<String>>, key: &str, id: &str) {
    index
        .entry(key.to_owned())
        .or_default()
        .insert(id.to_owned());
}

fn remove(index: &mut BTreeMap<String, BTreeSet<String>>, key: &str, id: &str) {
    if let Some(set) = index.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
