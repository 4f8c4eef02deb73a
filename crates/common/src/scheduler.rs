//! NicheImage's sampler names, parsed once where an operator (a model's `scheduler`, a flag)
//! names one. The samplers themselves are the engine's.

use std::str::FromStr;

/// NicheImage's scheduler names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    DpmPp2mKarras,
    DpmPp2m,
    Euler,
    EulerAncestral,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchedulerNameError {
    #[error(
        "scheduler `{0}` is not supported by this engine yet (supported: dpm++2m_karras, dpm++2m, euler, euler_a)"
    )]
    Unsupported(String),
    #[error(
        "unknown scheduler `{0}` (known: dpm++2m_karras, dpm++2m, euler, euler_a, dpm++sde_karras, dpm++sde, lcm)"
    )]
    Unknown(String),
}

impl FromStr for SchedulerKind {
    type Err = SchedulerNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dpm++2m_karras" => Ok(Self::DpmPp2mKarras),
            "dpm++2m" => Ok(Self::DpmPp2m),
            "euler" => Ok(Self::Euler),
            "euler_a" => Ok(Self::EulerAncestral),
            "dpm++sde_karras" | "dpm++sde" | "lcm" => {
                Err(SchedulerNameError::Unsupported(s.into()))
            }
            _ => Err(SchedulerNameError::Unknown(s.into())),
        }
    }
}

impl SchedulerKind {
    pub const ALL: [Self; 4] = [
        Self::DpmPp2mKarras,
        Self::DpmPp2m,
        Self::Euler,
        Self::EulerAncestral,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::DpmPp2mKarras => "dpm++2m_karras",
            Self::DpmPp2m => "dpm++2m",
            Self::Euler => "euler",
            Self::EulerAncestral => "euler_a",
        }
    }
}

impl std::fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for SchedulerKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for SchedulerKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unsupported() {
        assert_eq!(
            "euler_a".parse::<SchedulerKind>(),
            Ok(SchedulerKind::EulerAncestral)
        );
        let err = "lcm".parse::<SchedulerKind>().unwrap_err().to_string();
        assert!(err.contains("not supported"), "{err}");
        assert!(matches!(
            "ddim".parse::<SchedulerKind>(),
            Err(SchedulerNameError::Unknown(_))
        ));
    }
}
