use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, validate};

/// The kind of an AIM-OS system. Several instances (systems) may share one type; a message
/// addressed to a type is routed to one of its instances.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SystemType {
    Cmc,
    Hhni,
    Vif,
    Apoe,
    Seg,
    Sdfcvf,
    Cas,
    Timeline,
    CrossModel,
    DualPrompt,
    Mcp,
    /// A type a user adds; its name follows the identifier rules and is none of the above.
    Custom(String),
}

impl SystemType {
    /// The eleven AIM-OS types, in the order the seed registers them.
    pub const BUILT_IN: [SystemType; 11] = [
        SystemType::Cmc,
        SystemType::Hhni,
        SystemType::Vif,
        SystemType::Apoe,
        SystemType::Seg,
        SystemType::Sdfcvf,
        SystemType::Cas,
        SystemType::Timeline,
        SystemType::CrossModel,
        SystemType::DualPrompt,
        SystemType::Mcp,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            SystemType::Cmc => "cmc",
            SystemType::Hhni => "hhni",
            SystemType::Vif => "vif",
            SystemType::Apoe => "apoe",
            SystemType::Seg => "seg",
            SystemType::Sdfcvf => "sdfcvf",
            SystemType::Cas => "cas",
            SystemType::Timeline => "timeline",
            SystemType::CrossModel => "cross_model",
            SystemType::DualPrompt => "dual_prompt",
            SystemType::Mcp => "mcp",
            SystemType::Custom(name) => name,
        }
    }

    fn built_in(name: &str) -> Option<SystemType> {
        Self::BUILT_IN.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether `name` is one of the eleven AIM-OS type names.
    pub fn is_built_in_name(name: &str) -> bool {
        Self::built_in(name).is_some()
    }
}

impl FromStr for SystemType {
    type Err = Error;

    /// Built-in names map to their variant, so `Custom("cmc")` can never exist.
    fn from_str(name: &str) -> Result<Self, Error> {
        if let Some(t) = Self::built_in(name) {
            return Ok(t);
        }
        validate::identifier("system_type", name)?;
        Ok(SystemType::Custom(name.to_owned()))
    }
}

impl TryFrom<String> for SystemType {
    type Error = Error;

    fn try_from(name: String) -> Result<Self, Error> {
        name.parse()
    }
}

impl From<SystemType> for String {
    fn from(t: SystemType) -> String {
        match t {
            SystemType::Custom(name) => name,
            other => other.as_str().to_owned(),
        }
    }
}

impl fmt::Display for SystemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in SystemType::BUILT_IN {
            assert_eq!(t.as_str().parse::<SystemType>().unwrap(), t);
        }
        assert_eq!(
            "observer".parse::<SystemType>().unwrap(),
            SystemType::Custom("observer".into())
        );
        assert!("has space".parse::<SystemType>().is_err());
        assert!("".parse::<SystemType>().is_err());
    }

    #[test]
    fn serializes_as_plain_string() {
        let json = serde_json::to_string(&SystemType::CrossModel).unwrap();
        assert_eq!(json, "\"cross_model\"");
        let custom: SystemType = serde_json::from_str("\"observer\"").unwrap();
        assert_eq!(custom.to_string(), "observer");
    }
}
