use aimbus_core::{Config, SystemsFile};

use crate::{Error, RegistryHandle};

/// Starts the registry actor and registers every system of the configured systems file,
/// in file order (each after its dependencies): what the seed's manager does at start.
pub async fn start_registry(config: &Config) -> Result<RegistryHandle, Error> {
    let systems = SystemsFile::load(&config.systems_file())?;
    let registry = RegistryHandle::start(config.supervision());
    for system in systems.systems() {
        registry.register(system.clone()).await?;
    }
    Ok(registry)
}
