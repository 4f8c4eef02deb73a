//! Themes: `themes/*.toml` built in, or a file; partial files fall back to the default theme.

use ratatui::style::{Color, Style};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;

const DEFAULT: &str = include_str!("../../themes/default.toml");
pub const BUILT_IN: [(&str, &str); 3] = [
    ("default", DEFAULT),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Theme {
    pub text: Color,
    pub muted: Color,
    pub accent: Color,
    pub ok: Color,
    pub warn: Color,
    pub error: Color,
    pub border: Color,
    pub selection_fg: Color,
    pub selection_bg: Color,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    text: Option<String>,
    muted: Option<String>,
    accent: Option<String>,
    ok: Option<String>,
    warn: Option<String>,
    error: Option<String>,
    border: Option<String>,
    selection_fg: Option<String>,
    selection_bg: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("unknown theme `{0}`: use default, light, high-contrast or a path to a .toml file")]
    Unknown(String),
    #[error("cannot read theme file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid theme {origin}: {message}")]
    Parse { origin: String, message: String },
}

fn color(
    origin: &str,
    key: &str,
    value: &Option<String>,
    fallback: Color,
) -> Result<Color, ThemeError> {
    match value {
        None => Ok(fallback),
        Some(v) => Color::from_str(v).map_err(|_| ThemeError::Parse {
            origin: origin.to_string(),
            message: format!("`{key}` = \"{v}\" is not a colour"),
        }),
    }
}

impl Theme {
    /// Every colour the terminal's own: what NO_COLOR asks for.
    pub const PLAIN: Theme = Theme {
        text: Color::Reset,
        muted: Color::Reset,
        accent: Color::Reset,
        ok: Color::Reset,
        warn: Color::Reset,
        error: Color::Reset,
        border: Color::Reset,
        selection_fg: Color::Reset,
        selection_bg: Color::Reset,
    };

    fn from_toml(text: &str, origin: &str, base: &Theme) -> Result<Theme, ThemeError> {
        let f: ThemeFile = toml::from_str(text).map_err(|e| ThemeError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        Ok(Theme {
            text: color(origin, "text", &f.text, base.text)?,
            muted: color(origin, "muted", &f.muted, base.muted)?,
            accent: color(origin, "accent", &f.accent, base.accent)?,
            ok: color(origin, "ok", &f.ok, base.ok)?,
            warn: color(origin, "warn", &f.warn, base.warn)?,
            error: color(origin, "error", &f.error, base.error)?,
            border: color(origin, "border", &f.border, base.border)?,
            selection_fg: color(origin, "selection_fg", &f.selection_fg, base.selection_fg)?,
            selection_bg: color(origin, "selection_bg", &f.selection_bg, base.selection_bg)?,
        })
    }

    /// Labels and secondary text.
    pub fn label(&self) -> Style {
        Style::new().fg(self.muted)
    }

    /// Values: what the labels name.
    pub fn value(&self) -> Style {
        Style::new().fg(self.text)
    }

    /// Something working as it should.
    pub fn good(&self) -> Style {
        Style::new().fg(self.ok)
    }

    /// Something to look at soon.
    pub fn warning(&self) -> Style {
        Style::new().fg(self.warn)
    }

    /// Something failing.
    pub fn bad(&self) -> Style {
        Style::new().fg(self.error)
    }

    /// Titles, keys and the current choice.
    pub fn highlight(&self) -> Style {
        Style::new().fg(self.accent)
    }

    /// Block borders.
    pub fn frame(&self) -> Style {
        Style::new().fg(self.border)
    }

    /// A key or badge drawn on a colour (`bg`: the colour that says what it is).
    pub fn badge(&self, bg: Color) -> Style {
        Style::new().fg(self.selection_fg).bg(bg)
    }

    /// The selected row.
    pub fn selected(&self) -> Style {
        Style::new().fg(self.selection_fg).bg(self.selection_bg)
    }

    pub fn default_theme() -> Theme {
        Self::from_toml(DEFAULT, "default", &Theme::PLAIN)
            .expect("the built-in default theme parses")
    }

    /// A built-in name or a file path; `no_color` (NO_COLOR set) wins over both.
    pub fn load(name_or_path: &str, no_color: bool) -> Result<Theme, ThemeError> {
        if no_color {
            return Ok(Theme::PLAIN);
        }
        let base = Self::default_theme();
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::from_toml(text, name_or_path, &base);
        }
        let path = Path::new(name_or_path);
        if path.extension().is_some_and(|e| e == "toml") || path.components().count() > 1 {
            let text = std::fs::read_to_string(path).map_err(|source| ThemeError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            return Self::from_toml(&text, &path.display().to_string(), &base);
        }
        Err(ThemeError::Unknown(name_or_path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_theme_parses_and_is_complete() {
        for (name, text) in BUILT_IN {
            let t = Theme::from_toml(text, name, &Theme::PLAIN).unwrap();
            // A complete built-in sets every key, so nothing is left at the PLAIN fallback.
            let f: ThemeFile = toml::from_str(text).unwrap();
            assert!(f.text.is_some() && f.selection_bg.is_some(), "{name}");
            assert_ne!(t, Theme::PLAIN, "{name}");
        }
    }

    #[test]
    fn partial_file_overrides_only_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, "accent = \"#ff0000\"\n").unwrap();
        let t = Theme::load(path.to_str().unwrap(), false).unwrap();
        assert_eq!(t.accent, Color::Rgb(255, 0, 0));
        assert_eq!(t.ok, Theme::default_theme().ok);
    }

    #[test]
    fn errors_are_clear() {
        assert!(
            Theme::load("solarized", false)
                .unwrap_err()
                .to_string()
                .contains("unknown theme")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "accent = \"not-a-colour\"\n").unwrap();
        let err = Theme::load(path.to_str().unwrap(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("accent"), "{err}");
    }

    #[test]
    fn no_color_wins() {
        assert_eq!(Theme::load("high-contrast", true).unwrap(), Theme::PLAIN);
    }
}
