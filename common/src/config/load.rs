//! Loading: render the template, parse YAML, lay `OORT_*` variables and CLI overrides on top,
//! then deserialize and validate, naming the key and value of anything wrong.
//!
//! Everything meets in one JSON tree before it becomes a [`Config`], so that the three sources
//! share one set of deserializers and one way of reporting errors.

use serde_json::{Map, Value};

use super::{Config, ConfigError, REDACTED, template, validate};

/// Environment variables with this prefix override config keys: `OORT_API_TOKEN` sets
/// `api_token`, and `__` separates nesting levels, as in `OORT_CALLBACK__CONNECT`.
pub const ENV_PREFIX: &str = "OORT_";

/// Variables with the prefix that configure the command line rather than the config.
const COMMAND_LINE_VARIABLES: [&str; 1] = ["OORT_CONFIG"];

/// Where configuration comes from, lowest precedence first.
pub struct Sources<'a> {
    /// The config file's text (kuiperbelt's YAML), if a file was given.
    pub file: Option<&'a str>,
    /// Looks variables up for `{{ env }}` templating.
    pub lookup_env: &'a dyn Fn(&str) -> Option<String>,
    /// The process environment; only `OORT_*` entries are used.
    pub env_vars: Vec<(String, String)>,
    /// `key.path=value` overrides from the command line.
    pub overrides: Vec<(String, String)>,
}

/// A validated configuration and what was noticed on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Keys that were ignored because Oort does not know them.
    pub warnings: Vec<String>,
}

/// Builds the configuration from every source.
pub fn load(sources: &Sources<'_>) -> Result<Loaded, ConfigError> {
    // Every key Oort knows, with its default: which keys are sections and lists, which are not.
    let known = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let mut tree = match sources.file {
        Some(text) => parse_yaml(&template::render(text, sources.lookup_env)?)?,
        None => Map::new(),
    };
    for (name, value) in &sources.env_vars {
        let Some(suffix) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if COMMAND_LINE_VARIABLES.contains(&name.as_str()) || suffix.is_empty() {
            continue;
        }
        let key = suffix.to_ascii_lowercase().replace("__", ".");
        set_key(&mut tree, &known, &key, value)?;
    }
    for (key, value) in &sources.overrides {
        set_key(&mut tree, &known, key, value)?;
    }
    let warnings = unknown_keys(&tree, &known);
    let tree = Value::Object(tree);
    let mut config: Config = serde_path_to_error::deserialize(&tree).map_err(|err| {
        let key = err.path().to_string();
        let value = if is_secret_key(&key) {
            REDACTED.to_owned()
        } else {
            value_at(&tree, &key).map_or_else(|| "(missing)".to_owned(), |v| v.to_string())
        };
        ConfigError::Invalid {
            key,
            value,
            reason: err.into_inner().to_string(),
        }
    })?;
    config.fill_empty_with_defaults();
    validate::validate(&config)?;
    Ok(Loaded { config, warnings })
}

fn parse_yaml(text: &str) -> Result<Map<String, Value>, ConfigError> {
    let value: Value =
        serde_yaml_ng::from_str(text).map_err(|err| ConfigError::Yaml(err.to_string()))?;
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        other => Err(ConfigError::Yaml(format!(
            "the top level must be a mapping of keys, found {other}"
        ))),
    }
}

/// Sets a dotted key. Values are kept as strings (the deserializers accept strings for every
/// scalar type); a value starting with `{` or `[` is parsed as YAML so maps and lists can be
/// overridden, but only for keys that are maps or lists: a password that starts with `[` stays
/// a password.
fn set_key(
    tree: &mut Map<String, Value>,
    known: &Value,
    key: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let structured = !matches!(
        value_at(known, key),
        Some(Value::String(_) | Value::Number(_) | Value::Bool(_))
    );
    let value = if structured && raw.trim_start().starts_with(['{', '[']) {
        serde_yaml_ng::from_str(raw).map_err(|err| {
            let shown = if is_secret_key(key) { REDACTED } else { raw };
            ConfigError::invalid(key, shown, err.to_string())
        })?
    } else {
        Value::String(raw.to_owned())
    };
    let mut parts = key.split('.').peekable();
    let mut node = tree;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            return Err(ConfigError::invalid(key, raw, "empty segment in key"));
        }
        if parts.peek().is_none() {
            node.insert(part.to_owned(), value);
            return Ok(());
        }
        let child = node
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        node = match child {
            Value::Object(map) => map,
            _ => {
                return Err(ConfigError::invalid(
                    key,
                    raw,
                    format!("`{part}` is not a section"),
                ));
            }
        };
    }
    Ok(())
}

/// Keys whose values are secrets by their name (`api_token`, `cluster.nats_auth.password`,
/// ...): an error about such a key shows `<redacted>` instead of the value. A name that only
/// says where a secret is (`..._file`) is not one.
fn is_secret_key(key: &str) -> bool {
    let name = key.rsplit('.').next().unwrap_or(key);
    !name.ends_with("_file")
        && ["token", "password", "secret", "seed"]
            .iter()
            .any(|word| name.contains(word))
}

fn value_at<'v>(tree: &'v Value, key: &str) -> Option<&'v Value> {
    key.split('.')
        .filter(|part| !part.is_empty())
        .try_fold(tree, |node, part| node.get(part))
}

/// Keys present in the input but unknown to Oort, as warnings. kuiperbelt (yaml.v2) silently
/// ignored them; Oort ignores them too, so a kuiperbelt config never fails, but says so.
fn unknown_keys(tree: &Map<String, Value>, known: &Value) -> Vec<String> {
    let mut warnings = Vec::new();
    collect_unknown(tree, known, "", &mut warnings);
    warnings
}

fn collect_unknown(
    tree: &Map<String, Value>,
    known: &Value,
    prefix: &str,
    warnings: &mut Vec<String>,
) {
    for (key, value) in tree {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match known.get(key) {
            None => warnings.push(format!("unknown key `{path}` is ignored")),
            // proxy_set_header is a free-form map of header names.
            Some(known_child @ Value::Object(_)) if path != "proxy_set_header" => {
                if let Value::Object(child) = value {
                    collect_unknown(child, known_child, &path, warnings);
                }
            }
            Some(_) => {}
        }
    }
}
