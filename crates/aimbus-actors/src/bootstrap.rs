use aimbus_core::{SupervisionConfig, SystemsFile};

use crate::{Error, RegistryHandle};

/// Starts the registry actor and registers every system of a systems file, in file order
/// (each after its dependencies): what the seed's manager does at start.
pub async fn start_registry(
    supervision: &SupervisionConfig,
    systems: &SystemsFile,
) -> Result<RegistryHandle, Error> {
    let registry = RegistryHandle::start(supervision);
    for system in systems.systems() {
        registry.register(system.clone()).await?;
    }
    Ok(registry)
}
