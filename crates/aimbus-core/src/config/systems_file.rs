use std::path::Path;

use serde::Deserialize;

use crate::{Error, Registry, SystemInfo};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystemsFile {
    #[serde(default)]
    systems: Vec<SystemInfo>,
}

/// The systems registered at start, read from a TOML file of `[[systems]]` tables and
/// checked as a whole: each system valid, no duplicate id, every dependency listed before
/// its dependents, no cycle.
#[derive(Debug, Clone)]
pub struct SystemsFile {
    systems: Vec<SystemInfo>,
    registry: Registry,
}

impl SystemsFile {
    pub fn load(path: &Path) -> Result<SystemsFile, Error> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
            path: origin.clone(),
            reason: format!("cannot read the systems file: {e}"),
        })?;
        SystemsFile::parse(&origin, &text)
    }

    /// Parses systems-file text; `origin` names it in error messages.
    pub fn parse(origin: &str, text: &str) -> Result<SystemsFile, Error> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| Error::ConfigFile {
            path: origin.to_owned(),
            reason: e.to_string().trim_end().to_owned(),
        })?;
        let raw: RawSystemsFile =
            serde_path_to_error::deserialize(deserializer).map_err(|e| Error::Config {
                origin: origin.to_owned(),
                key: e.path().to_string(),
                problem: e.inner().message().trim_end().to_owned(),
            })?;
        let mut registry = Registry::new();
        for (i, system) in raw.systems.iter().enumerate() {
            registry
                .register(system.clone())
                .map_err(|e| blame_entry(origin, i, e))?;
        }
        Ok(SystemsFile {
            systems: raw.systems,
            registry,
        })
    }

    /// The systems in file order, which is a valid registration order.
    pub fn systems(&self) -> &[SystemInfo] {
        &self.systems
    }

    /// A registry holding every system of the file.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

fn blame_entry(origin: &str, index: usize, error: Error) -> Error {
    let (key, problem) = match error {
        Error::Invalid { field, reason } => (format!("systems[{index}].{field}"), reason),
        other => (format!("systems[{index}]"), other.to_string()),
    };
    Error::Config {
        origin: origin.to_owned(),
        key,
        problem,
    }
}
