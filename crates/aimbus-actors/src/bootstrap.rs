use aimbus_core::SystemsFile;

use crate::{Error, RegistryHandle};

/// Seeds the registry from a systems file, in file order (each after its dependencies):
/// the file registers each system the first time it names it, and never again (see
/// `registry.systems_file`), so what was changed through the API stands.
pub async fn seed_registry(registry: &RegistryHandle, systems: &SystemsFile) -> Result<(), Error> {
    for system in systems.systems() {
        match registry.seed(system.clone()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(system_id = %system.system_id, "seeded before; left as it is")
            }
            // A new system of the file that needs one the API has since unregistered: the
            // bus starts without it, and the next start tries again.
            Err(Error::Registry(
                error @ (aimbus_core::Error::UnknownDependency { .. }
                | aimbus_core::Error::DependencyCycle { .. }),
            )) => {
                tracing::warn!(system_id = %system.system_id, %error, "system of the systems file not registered");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
