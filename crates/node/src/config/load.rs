//! Finding, reading and parsing the config file.

use super::Config;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// toml's message names the line, the column and the key.
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

/// Where the effective configuration came from, for the operator.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigSource {
    File(PathBuf),
    Defaults,
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Defaults => write!(f, "built-in defaults (no config file found)"),
        }
    }
}

/// Parses a config document; `origin` only labels errors.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_path_buf(),
        message: e.to_string(),
    })?;
    config.validate()?;
    Ok(config)
}

/// Reads `explicit` if given (it must exist), else the XDG config file if present, else defaults.
pub fn load(explicit: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => default_config_path().filter(|p| p.is_file()),
    };
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            Ok((parse(&text, &path)?, ConfigSource::File(path)))
        }
        None => Ok((Config::default(), ConfigSource::Defaults)),
    }
}

fn xdg_dir(var: &str, home_fallback: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() && Path::new(&v).is_absolute() => Some(PathBuf::from(v)),
        _ => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(home_fallback)),
    }
}

/// `$XDG_CONFIG_HOME/nicheimage-tui/config.toml` (or `~/.config/...`).
pub fn default_config_path() -> Option<PathBuf> {
    xdg_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("nicheimage-tui").join("config.toml"))
}

/// `$XDG_DATA_HOME/nicheimage-tui` (or `~/.local/share/...`), else `./nicheimage-data`.
pub fn default_data_dir() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share")
        .map(|d| d.join("nicheimage-tui"))
        .unwrap_or_else(|| PathBuf::from("nicheimage-data"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EXAMPLE, LogFormat};
    use std::collections::BTreeSet;

    fn keys(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
        for (k, v) in table {
            let path = format!("{prefix}{k}");
            match v {
                toml::Value::Table(t) => keys(t, &format!("{path}."), out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }

    #[test]
    fn example_parses_to_exactly_the_defaults() {
        let parsed = parse(EXAMPLE, Path::new("config.example.toml")).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn example_sets_every_key_the_defaults_have() {
        let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
        let defaults: toml::Table = toml::from_str(&toml::to_string(&Config::default()).unwrap())
            .expect("defaults serialise to TOML");
        let (mut a, mut b) = (BTreeSet::new(), BTreeSet::new());
        keys(&example, "", &mut a);
        keys(&defaults, "", &mut b);
        assert_eq!(
            a, b,
            "config.example.toml and Config::default() disagree on keys"
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = "[node]\nlog_level = \"info\"\nlog_levle = \"debug\"\n";
        let err = parse(text, Path::new("c.toml")).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("log_levle"), "{err}");
        assert!(err.contains("c.toml"), "{err}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let err = parse("[nodes]\nx = 1\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nodes") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn bad_value_type_names_key_and_line() {
        let text = "\n[endpoint]\nport = \"ten thousand\"\n";
        let err = parse(text, Path::new("c.toml")).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn out_of_range_port_is_an_error() {
        let err = parse("[axon]\nport = 70000\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("port"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = parse("[proxy]\nchecking_probability = 1.5\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("proxy.checking_probability"), "{err}");
        let err = parse("[endpoint]\nnum_gpus = 0.0\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("endpoint.num_gpus"), "{err}");
        let err = parse("[node]\nlog_level = \"info,[\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("node.log_level"), "{err}");
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = parse("[node]\nlog_format = \"json\"\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.node.log_format, LogFormat::Json);
        assert_eq!(c.endpoint.port, 10006);
        assert_eq!(c.axon.port, 8091);
        assert_eq!(c.subtensor.netuid, 23);
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = load(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("nope.toml"), "{err}");
    }

    #[test]
    fn explicit_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[endpoint]\nport = 12000\n").unwrap();
        let (c, source) = load(Some(&path)).unwrap();
        assert_eq!(c.endpoint.port, 12000);
        assert_eq!(source, ConfigSource::File(path));
    }
}
