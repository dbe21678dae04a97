use aimbus_core::{Config, SystemsFile};

use crate::{Error, RegistryHandle, TransportSet};

/// Starts the registry actor and registers every system of a systems file, in file order
/// (each after its dependencies): what the seed's manager does at start.
pub async fn start_registry(
    config: &Config,
    transports: TransportSet,
    systems: &SystemsFile,
) -> Result<RegistryHandle, Error> {
    let registry = RegistryHandle::start(config, transports);
    for system in systems.systems() {
        registry.register(system.clone()).await?;
    }
    Ok(registry)
}
