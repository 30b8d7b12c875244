//! Writing the settings file from the launcher's settings page: only the
//! keys that changed are written (or those the file already sets), into
//! the file as it is, so a person's comments, order and keys this version
//! does not know are kept. Nephele's own parser ([`crate::config`]) reads
//! it back.

use std::path::Path;

use toml_edit::DocumentMut;

use crate::config::{ConfigError, Settings};

/// Writes `settings` into the file at `path` (made if missing), replaced
/// whole.
pub fn save(path: &Path, settings: &Settings) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| invalid(e.to_string()))?;
    let table = |s: &Settings| toml::Table::try_from(s).map_err(|e| invalid(e.to_string()));
    let (new, default) = (table(settings)?, table(&Settings::default())?);
    merge(doc.as_table_mut(), &new, Some(&default));
    nephele_platform::fs::replace(path, doc.to_string().as_bytes()).map_err(|source| {
        ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Sets in `doc` each key of `new` that differs from `default` or that
/// `doc` already has; sections likewise.
fn merge(doc: &mut toml_edit::Table, new: &toml::Table, default: Option<&toml::Table>) {
    for (key, value) in new {
        let was = default.and_then(|d| d.get(key));
        match value {
            toml::Value::Table(section) => {
                let changed = was.and_then(toml::Value::as_table) != Some(section);
                if !changed && !doc.contains_key(key) {
                    continue;
                }
                let entry = doc.entry(key).or_insert_with(toml_edit::table);
                if let Some(t) = entry.as_table_mut() {
                    merge(t, section, was.and_then(toml::Value::as_table));
                }
            }
            v if doc.contains_key(key) || was != Some(v) => {
                // toml's own rendering of a value is TOML that toml_edit reads.
                if let Ok(edit) = v.to_string().parse::<toml_edit::Value>() {
                    let decor = doc
                        .get(key)
                        .and_then(|i| i.as_value())
                        .map(|v| v.decor().clone());
                    let mut edit = edit;
                    if let Some(d) = decor {
                        *edit.decor_mut() = d;
                    }
                    doc[key.as_str()] = toml_edit::Item::Value(edit);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_written_and_the_rest_of_the_file_is_kept() {
        let dir = std::env::temp_dir().join(format!("nephele-settings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("config.toml");
        let mut s = Settings::default();
        s.video.fps = 120;
        save(&path, &s).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), "[video]\nfps = 120", "only what differs");
        std::fs::write(
            &path,
            "# my kiosk\ndirectory = \"https://d.example\"\nfuture-key = 1\n\n[video]\n# smooth\nfps = 120\nwidth = 1920\n",
        )
        .unwrap();
        let (mut s, _) = crate::config::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        s.video.fps = 60;
        s.input.clipboard = true;
        s.audio.microphone = false;
        save(&path, &s).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for kept in ["# my kiosk", "future-key = 1", "# smooth", "width = 1920"] {
            assert!(text.contains(kept), "{kept} lost:\n{text}");
        }
        let (back, unknown) = crate::config::parse(&text).unwrap();
        assert_eq!(unknown, ["future-key"]);
        assert_eq!(back, s);
        assert!(text.contains("fps = 60"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
