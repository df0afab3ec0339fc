//! Configuration: the `SOURCES` table, each source's secrets, and the global settings.
//!
//! Parsing never fails as a whole. Each source either parses or carries the error that names its
//! bad field, so one broken source answers 500 `misconfigured` while the others keep working, and
//! no source is ever served with a default in place of what its owner wrote. The worker builds a
//! [`Config`] once per isolate and logs [`Config::problems`] at start-up.

use crate::error::Rejection;
use crate::ordering::{Locator as VersionAt, Ordering, StalePolicy};
use crate::pattern::Pattern;
use crate::providers::generic::{Encoding, GenericScheme, Locator};
use crate::providers::Provider;
use crate::retry::{RetryPolicy, MAX_QUEUE_DELAY_SECS};
use crate::secret::{self, Secret, SecretEncoding, SecretSet};
use crate::signature::HashFn;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Environment names read by edgehook.
pub mod vars {
    pub const SOURCES: &str = "SOURCES";
    pub const SECRET_PREFIX: &str = "WEBHOOK_SECRET_";
    pub const DESTINATION_SECRET: &str = "DESTINATION_SECRET";
    pub const IDEMPOTENCY_TTL_SECS: &str = "IDEMPOTENCY_TTL_SECS";
    pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
    pub const ALERT_URL: &str = "ALERT_URL";
    pub const CAPTURE_RETENTION_SECS: &str = "CAPTURE_RETENTION_SECS";
    pub const HEALTH_MAX_LAG_SECS: &str = "HEALTH_MAX_LAG_SECS";
    pub const HEALTH_MAX_SHARD_BYTES: &str = "HEALTH_MAX_SHARD_BYTES";
}

/// Defaults, from SPEC section 1.
pub mod defaults {
    pub const TOLERANCE_SECS: u64 = 300;
    pub const MAX_BODY_BYTES: u64 = 5 * 1024 * 1024;
    pub const DELIVERY_TIMEOUT_SECS: u64 = 30;
    pub const IDEMPOTENCY_TTL_SECS: u64 = 30 * 24 * 3600;
    pub const CAPTURE_RETENTION_SECS: u64 = 30 * 24 * 3600;
    pub const HEALTH_MAX_LAG_SECS: u64 = 300;
    /// 80% of what a Durable Object may store: time to act before a shard refuses new records.
    pub const HEALTH_MAX_SHARD_BYTES: u64 = 8_000_000_000;
    pub const BREAKER_FAILURES: u32 = 5;
    pub const BREAKER_COOLDOWN_SECS: u64 = 10;
    pub const BREAKER_MAX_COOLDOWN_SECS: u64 = 300;
}

/// Platform limits that bound configuration values.
pub mod limits {
    /// Largest request body a Worker receives on the Free and Pro plans.
    pub const MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;
    /// Cloudflare Queues retry a message at most 100 times.
    pub const MAX_ATTEMPTS: u32 = 100;
    /// A queue consumer runs for at most 15 minutes of wall time.
    pub const MAX_DELIVERY_TIMEOUT_SECS: u64 = 900;
    /// Highest `rate_limit_per_sec`: beyond it, a Durable Object per destination would be the
    /// bottleneck, not the destination.
    pub const MAX_RATE_PER_SEC: f64 = 10_000.0;
    /// A week: a wider replay window is a configuration mistake, not a need.
    pub const MAX_TOLERANCE_SECS: u64 = 7 * 24 * 3600;
    /// Ten years, the longest of the global durations (`IDEMPOTENCY_TTL_SECS`,
    /// `CAPTURE_RETENTION_SECS`, `HEALTH_MAX_LAG_SECS`): longer is a typo, and the millisecond
    /// arithmetic stays far from overflowing (a TTL that overflowed would expire every id at
    /// once, and deduplicate nothing).
    pub const MAX_DURATION_SECS: u64 = 10 * 365 * 24 * 3600;
    /// What a SQLite-backed Durable Object may store (Cloudflare's limit per object): an
    /// idempotency shard this full refuses new records.
    pub const SHARD_STORAGE_BYTES: u64 = 10_000_000_000;
    /// Longest allowed source name (`[a-z0-9][a-z0-9_-]{0,63}`).
    pub const MAX_SOURCE_NAME: usize = 64;
}

/// A configuration problem: which source (`*` for global settings), which field, and why.
/// Never carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source: String,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source `{}`: field `{}`: {}", self.source, self.field, self.reason)
    }
}

impl ConfigError {
    fn new(source: &str, field: &str, reason: impl Into<String>) -> Self {
        ConfigError { source: source.to_owned(), field: field.to_owned(), reason: reason.into() }
    }

    /// The rejection a request to the affected source gets.
    pub fn rejection(&self, source: &str) -> Rejection {
        Rejection::Misconfigured { source_name: source.to_owned(), field: self.field.clone() }
    }
}

/// `ordering` as written: where an event's entity and version are found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderingConfig {
    entity: String,
    version: String,
}

/// The circuit breaker in front of a source's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed deliveries that open it; 0 turns the breaker off.
    pub failures: u32,
    pub cooldown_secs: u64,
    pub max_cooldown_secs: u64,
}

/// One source, fully validated.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub provider: Provider,
    pub secrets: SecretSet,
    pub tolerance_secs: u64,
    pub max_body_bytes: u64,
    pub destination: Option<String>,
    pub events: Option<Vec<Pattern>>,
    pub retry: RetryPolicy,
    pub delivery_timeout_secs: u64,
    pub rate_limit_per_sec: Option<f64>,
    pub breaker: BreakerConfig,
    /// Out-of-order handling: explicit, or the provider's default, unless `ordering = false`.
    pub ordering: Option<Ordering>,
    /// The URL the provider sends to, as it signs it (for providers that sign the URL), when it
    /// differs from what reaches the worker (a proxy, a custom domain).
    pub public_url: Option<String>,
    /// How a `generic` source signs (`None` for every other provider).
    pub generic: Option<GenericScheme>,
    /// Where the provider's event ids travel outside its signature: whether a signed request
    /// carries one event id only (`ingest::seal_of`). On unless the source turns it off.
    pub one_event_per_signature: bool,
}

impl SourceConfig {
    /// What the provider needs to verify this source's requests.
    pub fn scheme(&self) -> crate::providers::Scheme<'_> {
        let scheme = crate::providers::Scheme::new(&self.secrets, self.tolerance_secs);
        crate::providers::Scheme { generic: self.generic.as_ref(), ..scheme }
    }
}

/// Global settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub idempotency_ttl_secs: u64,
    /// How long captured events (headers, bodies, attempts) are kept.
    pub capture_retention_secs: u64,
    /// Processing lag past which `/health` is degraded.
    pub health_max_lag_secs: u64,
    /// Storage of the fullest idempotency shard past which `/health` is degraded.
    pub health_max_shard_bytes: u64,
    /// Key that signs forwarded requests; required as soon as one source has a destination.
    pub destination_secret: Option<Secret>,
    pub alert_url: Option<String>,
}

/// Everything edgehook was configured with.
#[derive(Debug, Clone)]
pub struct Config {
    sources: BTreeMap<String, Result<SourceConfig, ConfigError>>,
    /// Set when `SOURCES` itself is unusable: every source request answers `misconfigured`.
    sources_error: Option<ConfigError>,
    pub settings: Settings,
    settings_errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

/// Name of the secret variable for a source: upper-cased, `-` as `_`.
pub fn secret_var(source: &str) -> String {
    format!("{}{}", vars::SECRET_PREFIX, source.to_ascii_uppercase().replace('-', "_"))
}

/// Whether `name` is a valid source name: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn valid_source_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= limits::MAX_SOURCE_NAME
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

impl Config {
    /// Builds the configuration. `sources` is the `SOURCES` binding as JSON text (a TOML table in
    /// `wrangler.toml` arrives as an object and is serialised to JSON by the worker; a string
    /// binding is JSON already); `None` when it is not set. `var` reads any other binding.
    pub fn load(sources: Option<&str>, var: &dyn Fn(&str) -> Option<String>) -> Config {
        let (settings, settings_errors) = Settings::load(var);
        let mut config =
            Config { sources: BTreeMap::new(), sources_error: None, settings, settings_errors, warnings: Vec::new() };
        let Some(text) = sources else {
            config.warnings.push("SOURCES is not set: every webhook gets 404 unknown_source".into());
            return config;
        };
        let table = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(table)) => table,
            Ok(_) => {
                config.sources_error = Some(ConfigError::new("*", vars::SOURCES, "must be a table of sources"));
                return config;
            }
            Err(e) => {
                let reason = format!("not valid JSON (line {}, column {})", e.line(), e.column());
                config.sources_error = Some(ConfigError::new("*", vars::SOURCES, reason));
                return config;
            }
        };
        for (name, raw) in &table {
            let parsed = parse_source(name, raw, var, &config.settings, &mut config.warnings);
            config.sources.insert(name.clone(), parsed);
        }
        config.reject_secret_name_collisions();
        config
    }

    /// Two names that map to the same secret variable (`a-b`, `a_b`) would share a secret
    /// without anyone deciding so: both are refused.
    fn reject_secret_name_collisions(&mut self) {
        // A sorted list rather than a map by variable: a map type of its own cost 1.3 KB of
        // the gzipped bundle.
        let mut by_var: Vec<(String, String)> =
            self.sources.keys().map(|name| (secret_var(name), name.clone())).collect();
        crate::sort::sort_by(&mut by_var, |a, b| a.cmp(b));
        let shared: Vec<(String, Vec<String>)> = by_var
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|group| group.len() > 1)
            .map(|group| (group[0].0.clone(), group.iter().map(|(_, name)| name.clone()).collect()))
            .collect();
        for (var, names) in shared {
            for name in &names {
                let reason = format!("shares its secret variable with {}", names.join(", "));
                self.sources.insert(name.clone(), Err(ConfigError::new(name, &var, reason)));
            }
        }
    }

    /// The source a request names, or the rejection it gets.
    pub fn source(&self, name: &str) -> Result<&SourceConfig, Rejection> {
        if let Some(e) = &self.sources_error {
            return Err(e.rejection(name));
        }
        match self.sources.get(name) {
            None => Err(Rejection::UnknownSource),
            Some(Err(e)) => Err(e.rejection(name)),
            Some(Ok(source)) => Ok(source),
        }
    }

    /// Whether `name` is a source in `SOURCES`, whether or not its configuration is valid.
    pub fn names(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    /// Every configured source that parsed.
    pub fn sources(&self) -> impl Iterator<Item = &SourceConfig> {
        self.sources.values().filter_map(|s| s.as_ref().ok())
    }

    /// Every configuration error, for the start-up log.
    pub fn problems(&self) -> Vec<&ConfigError> {
        let per_source = self.sources.values().filter_map(|s| s.as_ref().err());
        self.sources_error.iter().chain(self.settings_errors.iter()).chain(per_source).collect()
    }

    /// Things that work but deserve a line in the log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl Settings {
    fn load(var: &dyn Fn(&str) -> Option<String>) -> (Settings, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut number = |name: &str, default: u64, max: u64, what: &str| match var(name) {
            None => default,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(n) if n > 0 && n <= max => n,
                _ => {
                    errors.push(ConfigError::new("*", name, format!("must be a number of {what}")));
                    default
                }
            },
        };
        let mut seconds = |name: &str, default: u64| {
            number(name, default, limits::MAX_DURATION_SECS, "seconds from 1 to 315360000 (ten years)")
        };
        let idempotency_ttl_secs = seconds(vars::IDEMPOTENCY_TTL_SECS, defaults::IDEMPOTENCY_TTL_SECS);
        let capture_retention_secs = seconds(vars::CAPTURE_RETENTION_SECS, defaults::CAPTURE_RETENTION_SECS);
        let health_max_lag_secs = seconds(vars::HEALTH_MAX_LAG_SECS, defaults::HEALTH_MAX_LAG_SECS);
        let health_max_shard_bytes = number(
            vars::HEALTH_MAX_SHARD_BYTES,
            defaults::HEALTH_MAX_SHARD_BYTES,
            limits::SHARD_STORAGE_BYTES,
            "bytes from 1 to 10000000000 (what a Durable Object may store)",
        );
        let destination_secret = match var(vars::DESTINATION_SECRET) {
            None => None,
            Some(text) => match secret::decode(&text, SecretEncoding::StandardWebhooks) {
                Ok(s) if s.hmac_key().is_some() => Some(s),
                // A `whpk_` public key decodes, but cannot sign anything.
                Ok(_) => {
                    errors.push(ConfigError::new(
                        "*",
                        vars::DESTINATION_SECRET,
                        "must be a whsec_ signing secret, not a public key",
                    ));
                    None
                }
                Err(e) => {
                    errors.push(ConfigError::new("*", vars::DESTINATION_SECRET, e.to_string()));
                    None
                }
            },
        };
        let alert_url = var(vars::ALERT_URL).filter(|u| !u.is_empty()).filter(|url| {
            let ok = is_http_url(url);
            if !ok {
                errors.push(ConfigError::new("*", vars::ALERT_URL, "must be an http(s) URL; alerts are off"));
            }
            ok
        });
        let settings = Settings {
            idempotency_ttl_secs,
            capture_retention_secs,
            health_max_lag_secs,
            health_max_shard_bytes,
            destination_secret,
            alert_url,
        };
        (settings, errors)
    }
}

/// Fields a source may have. Anything else is a typo and refused.
const FIELDS: &[&str] = &[
    "provider",
    "tolerance_secs",
    "max_body_bytes",
    "destination",
    "events",
    "max_attempts",
    "retry_base_secs",
    "retry_max_secs",
    "delivery_timeout_secs",
    "rate_limit_per_sec",
    "breaker_failures",
    "breaker_cooldown_secs",
    "breaker_max_cooldown_secs",
    "ordering",
    "stale",
    "public_url",
    "one_event_per_signature",
];

/// Fields only a `generic` source has.
const GENERIC_FIELDS: &[&str] = &[
    "header",
    "algorithm",
    "encoding",
    "prefix",
    "timestamp_header",
    "id_header",
    "id_pointer",
    "type_header",
    "type_pointer",
];

fn parse_source(
    name: &str,
    raw: &Value,
    var: &dyn Fn(&str) -> Option<String>,
    settings: &Settings,
    warnings: &mut Vec<String>,
) -> Result<SourceConfig, ConfigError> {
    let err = |field: &str, reason: &str| ConfigError::new(name, field, reason);
    if !valid_source_name(name) {
        return Err(err("name", "must match [a-z0-9][a-z0-9_-]{0,63}"));
    }
    let Value::Object(map) = raw else {
        return Err(err("provider", "a source must be a table with at least `provider`"));
    };
    let provider_name: String = field(map, name, "provider")?.ok_or_else(|| err("provider", "required"))?;
    let provider = Provider::from_name(&provider_name).ok_or_else(|| err("provider", "unknown provider"))?;
    let known = |k: &str| FIELDS.contains(&k) || (provider == Provider::Generic && GENERIC_FIELDS.contains(&k));
    if let Some(unknown) = map.keys().find(|k| !known(k)) {
        return Err(err(unknown, "unknown field"));
    }
    let generic = if provider == Provider::Generic { Some(parse_generic(name, map)?) } else { None };

    let tolerance_secs =
        bounded(map, name, "tolerance_secs", provider.default_tolerance_secs(), 0, limits::MAX_TOLERANCE_SECS)?;
    let max_body_bytes = bounded(map, name, "max_body_bytes", defaults::MAX_BODY_BYTES, 1, limits::MAX_BODY_BYTES)?;
    let delivery_timeout_secs = bounded(
        map,
        name,
        "delivery_timeout_secs",
        defaults::DELIVERY_TIMEOUT_SECS,
        1,
        limits::MAX_DELIVERY_TIMEOUT_SECS,
    )?;

    let d = RetryPolicy::default();
    let max_attempts =
        bounded(map, name, "max_attempts", d.max_attempts.into(), 1, limits::MAX_ATTEMPTS.into())? as u32;
    let base_secs = bounded(map, name, "retry_base_secs", d.base_secs, 1, MAX_QUEUE_DELAY_SECS)?;
    let max_secs = bounded(map, name, "retry_max_secs", d.max_secs.max(base_secs), base_secs, MAX_QUEUE_DELAY_SECS)?;
    let retry = RetryPolicy { max_attempts, base_secs, max_secs };

    let destination: Option<String> = field(map, name, "destination")?;
    if let Some(url) = &destination {
        if !is_http_url(url) {
            return Err(err("destination", "must be an http(s) URL"));
        }
        if settings.destination_secret.is_none() {
            // Forwarding unsigned would let anyone who finds the destination forge events.
            return Err(err(vars::DESTINATION_SECRET, "required to sign forwarded events"));
        }
    }

    let events = match field::<Vec<String>>(map, name, "events")? {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|p| {
                    Pattern::parse(p)
                        .ok_or_else(|| err("events", "patterns are 1 to 255 bytes of visible ASCII and inner spaces"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };

    let rate_limit_per_sec: Option<f64> = field(map, name, "rate_limit_per_sec")?;
    if let Some(rate) = rate_limit_per_sec {
        if !(rate.is_finite() && rate > 0.0 && rate <= limits::MAX_RATE_PER_SEC) {
            return Err(err("rate_limit_per_sec", "must be a positive number of at most 10000"));
        }
    }
    let breaker = BreakerConfig {
        failures: bounded(map, name, "breaker_failures", defaults::BREAKER_FAILURES.into(), 0, 1000)? as u32,
        cooldown_secs: bounded(map, name, "breaker_cooldown_secs", defaults::BREAKER_COOLDOWN_SECS, 1, 3600)?,
        max_cooldown_secs: 0,
    };
    let max_cooldown_secs = bounded(
        map,
        name,
        "breaker_max_cooldown_secs",
        defaults::BREAKER_MAX_COOLDOWN_SECS.max(breaker.cooldown_secs),
        breaker.cooldown_secs,
        MAX_QUEUE_DELAY_SECS,
    )?;
    let breaker = BreakerConfig { max_cooldown_secs, ..breaker };
    if rate_limit_per_sec.is_some() && !map.contains_key("destination") {
        warnings.push(format!("source `{name}`: rate_limit_per_sec has no effect without a destination"));
    }
    if breaker.failures > max_attempts {
        // Each event spends at most `failures - 1` attempts before the breaker opens; with fewer
        // attempts than that, an outage can dead-letter events before the breaker protects them.
        warnings.push(format!(
            "source `{name}`: max_attempts ({max_attempts}) is below breaker_failures ({}); a destination outage can dead-letter events before the circuit opens",
            breaker.failures
        ));
    }

    let stale = match field::<String>(map, name, "stale")? {
        None => StalePolicy::Skip,
        Some(text) => StalePolicy::parse(&text).ok_or_else(|| err("stale", "must be \"skip\" or \"deliver\""))?,
    };
    let ordering = match map.get("ordering") {
        // The provider's default, where its payloads carry an entity and a version.
        None => provider.default_ordering().map(|(entity, version)| Ordering {
            entity: entity.to_owned(),
            version: VersionAt::parse(version).expect("provider defaults are valid"),
            stale,
        }),
        Some(Value::Bool(false)) => None,
        Some(raw) => {
            let written: OrderingConfig = crate::json::from_value(raw.clone()).map_err(|_| {
                err("ordering", "must be {\"entity\": <JSON pointer>, \"version\": <JSON pointer or header>}, or false")
            })?;
            if !written.entity.starts_with('/') {
                return Err(err("ordering", "entity must be a JSON pointer (\"/data/id\")"));
            }
            let version = VersionAt::parse(&written.version)
                .ok_or_else(|| err("ordering", "version must be a JSON pointer or a header name"))?;
            Some(Ordering { entity: written.entity, version, stale })
        }
    };

    // On by default: off only for a sender that sends byte-identical signed requests as distinct
    // events under fresh ids (see `Provider::seal_by`).
    let one_event_per_signature = field::<bool>(map, name, "one_event_per_signature")?.unwrap_or(true);

    let public_url: Option<String> = field(map, name, "public_url")?;
    if public_url.as_deref().is_some_and(|u| !is_http_url(u)) {
        return Err(err("public_url", "must be an http(s) URL"));
    }

    let secret_name = secret_var(name);
    let raw_secret = var(&secret_name).ok_or_else(|| err(&secret_name, "not set"))?;
    let secrets =
        SecretSet::parse(&raw_secret, provider.secret_encoding()).map_err(|e| err(&secret_name, &e.to_string()))?;
    if secret::misses_a_list(&raw_secret) {
        warnings.push(format!(
            "source `{name}`: {secret_name} starts with `[` but is not a JSON array of strings, so it is used as one plain secret"
        ));
    }

    Ok(SourceConfig {
        name: name.to_owned(),
        provider,
        secrets,
        tolerance_secs,
        max_body_bytes,
        destination,
        events,
        retry,
        delivery_timeout_secs,
        rate_limit_per_sec,
        breaker,
        ordering,
        public_url,
        generic,
        one_event_per_signature,
    })
}

/// A `generic` source's scheme from its fields (see `providers::generic`).
fn parse_generic(name: &str, map: &Map<String, Value>) -> Result<GenericScheme, ConfigError> {
    let err = |field: &str, reason: &str| ConfigError::new(name, field, reason);
    let header_name = |key: &str| -> Result<Option<String>, ConfigError> {
        match field::<String>(map, name, key)? {
            Some(h) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {
                Ok(Some(h.to_ascii_lowercase()))
            }
            Some(_) => Err(err(key, "must be a header name")),
            None => Ok(None),
        }
    };
    let pointer = |key: &str| -> Result<Option<String>, ConfigError> {
        match field::<String>(map, name, key)? {
            Some(p) if p.is_empty() || p.starts_with('/') => Ok(Some(p)),
            Some(_) => Err(err(key, "must be a JSON pointer (\"/data/id\")")),
            None => Ok(None),
        }
    };
    let locator = |header_field: &str, pointer_field: &str| -> Result<Option<Locator>, ConfigError> {
        match (header_name(header_field)?, pointer(pointer_field)?) {
            (Some(_), Some(_)) => Err(err(pointer_field, &format!("give {header_field} or {pointer_field}, not both"))),
            (Some(h), None) => Ok(Some(Locator::Header(h))),
            (None, Some(p)) => Ok(Some(Locator::Pointer(p))),
            (None, None) => Ok(None),
        }
    };
    let algorithm = match field::<String>(map, name, "algorithm")? {
        None => HashFn::Sha256,
        Some(a) => HashFn::parse(&a).ok_or_else(|| err("algorithm", "must be sha256, sha1 or sha512"))?,
    };
    let encoding = match field::<String>(map, name, "encoding")? {
        None => Encoding::Hex,
        Some(e) => Encoding::parse(&e).ok_or_else(|| err("encoding", "must be hex or base64"))?,
    };
    Ok(GenericScheme {
        header: header_name("header")?.ok_or_else(|| err("header", "required for a generic source"))?,
        algorithm,
        encoding,
        prefix: field(map, name, "prefix")?.unwrap_or_default(),
        timestamp_header: header_name("timestamp_header")?,
        id: locator("id_header", "id_pointer")?,
        event_type: locator("type_header", "type_pointer")?,
    })
}

/// Reads an optional field of type `T`; a value of the wrong type names the field.
fn field<T: DeserializeOwned>(map: &Map<String, Value>, source: &str, name: &str) -> Result<Option<T>, ConfigError> {
    match map.get(name) {
        None => Ok(None),
        Some(v) => {
            crate::json::from_value(v.clone()).map(Some).map_err(|_| ConfigError::new(source, name, "wrong type"))
        }
    }
}

/// Reads an optional whole number within `[min, max]`, or its default.
fn bounded(
    map: &Map<String, Value>,
    source: &str,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let value = field::<u64>(map, source, name)
        .map_err(|_| ConfigError::new(source, name, "must be a whole number"))?
        .unwrap_or(default);
    if value < min || value > max {
        return Err(ConfigError::new(source, name, format!("must be between {min} and {max}")));
    }
    Ok(value)
}

/// A destination or alert URL: `http://` or `https://`, a host, no whitespace or control bytes,
/// nothing but ASCII. The host may not be percent-encoded: the worker parses URLs with ASCII-only
/// host names (an internationalised domain is written in its `xn--` form), and would otherwise
/// only find out at delivery time.
fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    host.is_some_and(|h| !h.is_empty() && !h.contains('%')) && url.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_hosts_are_ascii_and_paths_may_be_encoded() {
        for good in ["https://xn--bcher-kva.example/hook", "https://example.com/a%20b?x=%2F", "http://127.0.0.1:9/x"] {
            assert!(is_http_url(good), "{good}");
        }
        for bad in ["https://bücher.example/", "https://b%C3%BCcher.example/", "https:///x", "https://", "ftp://x"] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const DEST: (&str, &str) = ("DESTINATION_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");

    fn misconfigured(config: &Config, source: &str) -> String {
        match config.source(source) {
            Err(Rejection::Misconfigured { field, .. }) => field,
            other => panic!("expected misconfigured, got {other:?}"),
        }
    }

    #[test]
    fn full_source_with_defaults() {
        let sources = r#"{"stripe":{"provider":"stripe","destination":"https://example.com/hook"},
                          "gh-main":{"provider":"github","events":["issues.*"],"max_attempts":3,"retry_base_secs":1,"retry_max_secs":4}}"#;
        let c = Config::load(
            Some(sources),
            &env(&[("WEBHOOK_SECRET_STRIPE", "whsec_x"), ("WEBHOOK_SECRET_GH_MAIN", "s"), DEST]),
        );
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let s = c.source("stripe").unwrap();
        assert_eq!(s.provider, Provider::Stripe);
        assert_eq!(s.tolerance_secs, 300);
        assert_eq!(s.max_body_bytes, 5_242_880);
        assert_eq!(s.delivery_timeout_secs, 30);
        assert_eq!(s.retry, RetryPolicy { max_attempts: 8, base_secs: 10, max_secs: 21_600 });
        assert_eq!(s.destination.as_deref(), Some("https://example.com/hook"));
        let g = c.source("gh-main").unwrap();
        assert_eq!(g.retry, RetryPolicy { max_attempts: 3, base_secs: 1, max_secs: 4 });
        assert_eq!(g.events.as_ref().unwrap()[0].as_str(), "issues.*");
        assert_eq!(c.settings.idempotency_ttl_secs, 2_592_000);
        assert_eq!(c.source("nope").unwrap_err(), Rejection::UnknownSource);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (r#"{"provider":"paypal"}"#, "provider"),
            (r#"{}"#, "provider"),
            (r#"{"provider":7}"#, "provider"),
            (r#""stripe""#, "provider"),
            (r#"{"provider":"stripe","tolerance":5}"#, "tolerance"),
            (r#"{"provider":"stripe","tolerance_secs":-1}"#, "tolerance_secs"),
            (r#"{"provider":"stripe","max_body_bytes":0}"#, "max_body_bytes"),
            (r#"{"provider":"stripe","max_body_bytes":999999999999}"#, "max_body_bytes"),
            (r#"{"provider":"stripe","destination":"ftp://x"}"#, "destination"),
            (r#"{"provider":"stripe","destination":"https://a b"}"#, "destination"),
            (r#"{"provider":"stripe","destination":"https://bücher.example/hook"}"#, "destination"),
            (r#"{"provider":"stripe","destination":"https://b%C3%BCcher.example/hook"}"#, "destination"),
            (r#"{"provider":"stripe","destination":"https://?x"}"#, "destination"),
            (r#"{"provider":"stripe","events":["ok",""]}"#, "events"),
            (r#"{"provider":"stripe","events":"invoice.*"}"#, "events"),
            (r#"{"provider":"stripe","max_attempts":0}"#, "max_attempts"),
            (r#"{"provider":"stripe","max_attempts":101}"#, "max_attempts"),
            (r#"{"provider":"stripe","retry_base_secs":100,"retry_max_secs":10}"#, "retry_max_secs"),
            (r#"{"provider":"stripe","delivery_timeout_secs":0}"#, "delivery_timeout_secs"),
            (r#"{"provider":"stripe","rate_limit_per_sec":0}"#, "rate_limit_per_sec"),
            (r#"{"provider":"stripe","ordering":{"entity":"/a"}}"#, "ordering"),
        ];
        for (raw, field) in cases {
            let sources = format!(r#"{{"s":{raw}}}"#);
            let c = Config::load(Some(&sources), &env(&[("WEBHOOK_SECRET_S", "x"), DEST]));
            assert_eq!(misconfigured(&c, "s"), field, "{raw}");
            assert_eq!(c.problems().len(), 1, "{raw}");
        }
    }

    #[test]
    fn missing_or_bad_secrets_name_the_variable_not_the_value() {
        let sources = r#"{"a":{"provider":"stripe"},"b":{"provider":"standard"},"c":{"provider":"stripe"}}"#;
        let c = Config::load(Some(sources), &env(&[("WEBHOOK_SECRET_B", "whsec_!!!"), ("WEBHOOK_SECRET_C", "[]")]));
        assert_eq!(misconfigured(&c, "a"), "WEBHOOK_SECRET_A");
        assert_eq!(misconfigured(&c, "b"), "WEBHOOK_SECRET_B");
        assert_eq!(misconfigured(&c, "c"), "WEBHOOK_SECRET_C");
        let printed = format!("{:?}", c.problems());
        assert!(!printed.contains("!!!"), "{printed}");
    }

    #[test]
    fn a_secret_that_only_looks_like_a_list_is_used_and_warned_about() {
        let sources = r#"{"a":{"provider":"github"},"b":{"provider":"github"}}"#;
        let c =
            Config::load(Some(sources), &env(&[("WEBHOOK_SECRET_A", "[s3cret"), ("WEBHOOK_SECRET_B", r#"["n","o"]"#)]));
        assert_eq!(c.source("a").unwrap().secrets.hmac_keys().collect::<Vec<_>>(), [b"[s3cret".as_slice()]);
        assert_eq!(c.source("b").unwrap().secrets.hmac_keys().count(), 2);
        assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
        assert!(c.warnings()[0].contains("WEBHOOK_SECRET_A starts with `[`"), "{:?}", c.warnings());
        assert!(!c.warnings()[0].contains("s3cret"), "never the value");
    }

    #[test]
    fn destination_secret_must_be_a_signing_secret() {
        let sources = r#"{"a":{"provider":"stripe","destination":"http://127.0.0.1:9/x"}}"#;
        use base64::{engine::general_purpose::STANDARD, Engine};
        // RFC 8032's test 1 public key.
        let point =
            crate::signature::from_hex::<32>("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let point = point.unwrap();
        let public_key = format!("whpk_{}", STANDARD.encode(point));
        assert!(secret::decode(&public_key, SecretEncoding::StandardWebhooks).is_ok(), "a valid public key");
        for bad in [public_key.as_str(), "whsec_not base64!"] {
            let c = Config::load(Some(sources), &env(&[("WEBHOOK_SECRET_A", "x"), ("DESTINATION_SECRET", bad)]));
            assert_eq!(misconfigured(&c, "a"), "DESTINATION_SECRET", "{bad}");
            assert!(c.problems().iter().any(|p| p.field == "DESTINATION_SECRET"), "{bad}");
        }
        let good = format!("whsec_{}", STANDARD.encode([7u8; 32]));
        let c = Config::load(Some(sources), &env(&[("WEBHOOK_SECRET_A", "x"), ("DESTINATION_SECRET", &good)]));
        assert!(c.source("a").is_ok());
    }

    #[test]
    fn destination_requires_a_destination_secret() {
        let sources = r#"{"a":{"provider":"stripe","destination":"http://127.0.0.1:9/x"},"b":{"provider":"stripe"}}"#;
        let c = Config::load(Some(sources), &env(&[("WEBHOOK_SECRET_A", "x"), ("WEBHOOK_SECRET_B", "x")]));
        assert_eq!(misconfigured(&c, "a"), "DESTINATION_SECRET");
        assert!(c.source("b").is_ok(), "a source without destination needs no destination secret");
    }

    #[test]
    fn broken_sources_json_misconfigures_everything() {
        for text in ["{not json", "[1,2]", "\"x\""] {
            let c = Config::load(Some(text), &env(&[]));
            assert_eq!(misconfigured(&c, "anything"), "SOURCES");
            assert_eq!(c.problems().len(), 1);
        }
        let unset = Config::load(None, &env(&[]));
        assert_eq!(unset.source("a").unwrap_err(), Rejection::UnknownSource);
        assert_eq!(unset.warnings().len(), 1);
    }

    #[test]
    fn invalid_names_and_secret_collisions() {
        let sources = r#"{"Bad":{"provider":"stripe"},"a-b":{"provider":"stripe"},"a_b":{"provider":"stripe"}}"#;
        let c = Config::load(Some(sources), &env(&[("WEBHOOK_SECRET_BAD", "x"), ("WEBHOOK_SECRET_A_B", "x")]));
        assert_eq!(misconfigured(&c, "Bad"), "name");
        assert_eq!(misconfigured(&c, "a-b"), "WEBHOOK_SECRET_A_B");
        assert_eq!(misconfigured(&c, "a_b"), "WEBHOOK_SECRET_A_B");

        // Groups of any size, whose names are not next to each other in name order; the
        // names between them are unaffected.
        let sources = r#"{"a-b":{"provider":"stripe"},"a-b_c":{"provider":"stripe"},"a-c":{"provider":"stripe"},
                          "a_b":{"provider":"stripe"},"a_b-c":{"provider":"stripe"},"a_b_c":{"provider":"stripe"}}"#;
        let c = Config::load(
            Some(sources),
            &env(&[("WEBHOOK_SECRET_A_B", "x"), ("WEBHOOK_SECRET_A_B_C", "x"), ("WEBHOOK_SECRET_A_C", "x")]),
        );
        assert!(c.source("a-c").is_ok());
        for (name, var) in [("a-b", "A_B"), ("a_b", "A_B"), ("a-b_c", "A_B_C"), ("a_b-c", "A_B_C"), ("a_b_c", "A_B_C")]
        {
            assert_eq!(misconfigured(&c, name), format!("WEBHOOK_SECRET_{var}"), "{name}");
        }
        let problems = c.problems().into_iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n");
        assert!(problems.contains("shares its secret variable with a-b_c, a_b-c, a_b_c"), "{problems}");
    }

    #[test]
    fn source_names() {
        for ok in ["a", "0", "stripe", "gh-main_2", &"a".repeat(64)] {
            assert!(valid_source_name(ok), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "a b", "a.b", "é", &"a".repeat(65)] {
            assert!(!valid_source_name(bad), "{bad}");
        }
        assert_eq!(secret_var("gh-main"), "WEBHOOK_SECRET_GH_MAIN");
    }

    #[test]
    fn names_are_the_configured_sources_valid_or_not() {
        let c = Config::load(Some(r#"{"a":{"provider":"stripe"},"b":{"provider":"paypal"}}"#), &env(&[]));
        assert!(c.names("a") && c.names("b"));
        assert!(!c.names("zz"));
        let broken = Config::load(Some("{not json"), &env(&[]));
        assert!(!broken.names("a"), "with SOURCES unreadable, no name is a source's");
        assert!(broken.source("a").is_err());
    }

    #[test]
    fn global_settings() {
        let c = Config::load(None, &env(&[("IDEMPOTENCY_TTL_SECS", "5"), ("ALERT_URL", "https://hooks.slack.com/x")]));
        assert_eq!(c.settings.idempotency_ttl_secs, 5);
        assert_eq!(c.settings.capture_retention_secs, 2_592_000);
        assert_eq!(c.settings.health_max_lag_secs, 300);
        assert_eq!(c.settings.health_max_shard_bytes, 8_000_000_000);
        let set = Config::load(
            None,
            &env(&[
                ("CAPTURE_RETENTION_SECS", "86400"),
                ("HEALTH_MAX_LAG_SECS", "60"),
                ("HEALTH_MAX_SHARD_BYTES", "5000"),
            ]),
        );
        assert_eq!((set.settings.capture_retention_secs, set.settings.health_max_lag_secs), (86_400, 60));
        assert_eq!(set.settings.health_max_shard_bytes, 5000);
        assert_eq!(c.settings.alert_url.as_deref(), Some("https://hooks.slack.com/x"));
        assert!(c.problems().is_empty());
        let bad = Config::load(
            None,
            &env(&[
                ("IDEMPOTENCY_TTL_SECS", "0"),
                ("CAPTURE_RETENTION_SECS", "-1"),
                // "Forever": past ten years, its milliseconds would overflow.
                ("HEALTH_MAX_LAG_SECS", "99999999999999999"),
                // Past what a Durable Object may store: never reached, so never degraded.
                ("HEALTH_MAX_SHARD_BYTES", "10000000001"),
                ("DESTINATION_SECRET", "whsec_%"),
                ("ALERT_URL", "nope"),
            ]),
        );
        let fields: Vec<&str> = bad.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "IDEMPOTENCY_TTL_SECS",
                "CAPTURE_RETENTION_SECS",
                "HEALTH_MAX_LAG_SECS",
                "HEALTH_MAX_SHARD_BYTES",
                "DESTINATION_SECRET",
                "ALERT_URL"
            ]
        );
        assert_eq!(bad.settings.health_max_lag_secs, 300, "the default instead");
        assert_eq!(bad.settings.health_max_shard_bytes, 8_000_000_000);
        let forever = Config::load(None, &env(&[("IDEMPOTENCY_TTL_SECS", "99999999999999999")]));
        assert_eq!(forever.settings.idempotency_ttl_secs, 2_592_000);
        let longest = Config::load(None, &env(&[("IDEMPOTENCY_TTL_SECS", "315360000")]));
        assert!(longest.problems().is_empty());
        assert_eq!(bad.settings.alert_url, None, "a bad alert URL is not used");
    }

    #[test]
    fn generic_sources() {
        let sources = r#"{"g":{"provider":"generic","header":"X-Sig","algorithm":"sha1","encoding":"base64",
                               "prefix":"sha1=","id_pointer":"/meta/id","type_header":"X-Kind","timestamp_header":"X-Ts"},
                          "h":{"provider":"generic","header":"x-sig"}}"#;
        let c = Config::load(Some(sources), &env(&[("WEBHOOK_SECRET_G", "x"), ("WEBHOOK_SECRET_H", "y")]));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let g = c.source("g").unwrap().generic.clone().unwrap();
        assert_eq!(
            g,
            GenericScheme {
                header: "x-sig".into(),
                algorithm: HashFn::Sha1,
                encoding: Encoding::Base64,
                prefix: "sha1=".into(),
                timestamp_header: Some("x-ts".into()),
                id: Some(Locator::Pointer("/meta/id".into())),
                event_type: Some(Locator::Header("x-kind".into())),
            }
        );
        let h = c.source("h").unwrap().generic.clone().unwrap();
        assert_eq!((h.algorithm, h.encoding, h.id, h.prefix.as_str()), (HashFn::Sha256, Encoding::Hex, None, ""));
        let cases = [
            (r#"{"provider":"generic"}"#, "header"),
            (r#"{"provider":"generic","header":"a b"}"#, "header"),
            (r#"{"provider":"generic","header":"x","algorithm":"md5"}"#, "algorithm"),
            (r#"{"provider":"generic","header":"x","encoding":"base32"}"#, "encoding"),
            (r#"{"provider":"generic","header":"x","id_pointer":"data.id"}"#, "id_pointer"),
            (r#"{"provider":"generic","header":"x","id_header":"a","id_pointer":"/a"}"#, "id_pointer"),
            (r#"{"provider":"stripe","header":"x"}"#, "header"),
        ];
        for (raw, field) in cases {
            let c = Config::load(Some(&format!(r#"{{"s":{raw}}}"#)), &env(&[("WEBHOOK_SECRET_S", "x")]));
            assert_eq!(misconfigured(&c, "s"), field, "{raw}");
        }
    }

    #[test]
    fn providers_set_their_default_tolerance() {
        let sources =
            r#"{"t":{"provider":"twitch"},"s":{"provider":"stripe"},"x":{"provider":"twitch","tolerance_secs":30}}"#;
        let c = Config::load(
            Some(sources),
            &env(&[("WEBHOOK_SECRET_T", "a"), ("WEBHOOK_SECRET_S", "a"), ("WEBHOOK_SECRET_X", "a")]),
        );
        assert_eq!(c.source("t").unwrap().tolerance_secs, 600);
        assert_eq!(c.source("s").unwrap().tolerance_secs, 300);
        assert_eq!(c.source("x").unwrap().tolerance_secs, 30);
    }

    #[test]
    fn ordering_defaults_overrides_and_off() {
        let sources = r#"{
            "a": {"provider": "stripe"},
            "b": {"provider": "stripe", "ordering": false},
            "c": {"provider": "github", "ordering": {"entity": "/issue/id", "version": "X-Version"}, "stale": "deliver"},
            "d": {"provider": "github"},
            "e": {"provider": "shopify"}
        }"#;
        let secrets: Vec<(&str, &str)> = ["A", "B", "C", "D", "E"]
            .iter()
            .map(|s| (Box::leak(format!("WEBHOOK_SECRET_{s}").into_boxed_str()) as &str, "x"))
            .collect();
        let c = Config::load(Some(sources), &env(&secrets));
        let a = c.source("a").unwrap().ordering.clone().unwrap();
        assert_eq!((a.entity.as_str(), &a.version), ("/data/object/id", &VersionAt::Pointer("/created".into())));
        assert_eq!(a.stale, StalePolicy::Skip);
        assert_eq!(c.source("b").unwrap().ordering, None);
        let custom = c.source("c").unwrap().ordering.clone().unwrap();
        assert_eq!((custom.version, custom.stale), (VersionAt::Header("x-version".into()), StalePolicy::Deliver));
        assert_eq!(c.source("d").unwrap().ordering, None, "GitHub payloads carry no version");
        assert_eq!(
            c.source("e").unwrap().ordering.clone().unwrap().version,
            VersionAt::Header("x-shopify-triggered-at".into())
        );
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn rate_limits_and_breakers() {
        let no_destination = Config::load(
            Some(r#"{"a":{"provider":"stripe","rate_limit_per_sec":1}}"#),
            &env(&[("WEBHOOK_SECRET_A", "x")]),
        );
        assert_eq!(no_destination.warnings().len(), 1);
        let too_few_attempts = Config::load(
            Some(r#"{"a":{"provider":"stripe","max_attempts":2,"breaker_failures":3}}"#),
            &env(&[("WEBHOOK_SECRET_A", "x")]),
        );
        assert!(too_few_attempts.warnings()[0].contains("max_attempts (2) is below breaker_failures (3)"));
        let enough = Config::load(
            Some(r#"{"a":{"provider":"stripe","max_attempts":2,"breaker_failures":2}}"#),
            &env(&[("WEBHOOK_SECRET_A", "x")]),
        );
        assert!(enough.warnings().is_empty());
        let sources =
            r#"{"a":{"provider":"stripe","rate_limit_per_sec":2.5,"breaker_failures":3,"breaker_cooldown_secs":2}}"#;
        let c = Config::load(Some(sources), &env(&[("WEBHOOK_SECRET_A", "x")]));
        let a = c.source("a").unwrap();
        assert_eq!(a.rate_limit_per_sec, Some(2.5));
        assert_eq!(a.breaker, BreakerConfig { failures: 3, cooldown_secs: 2, max_cooldown_secs: 300 });
        let d = Config::load(Some(r#"{"a":{"provider":"stripe"}}"#), &env(&[("WEBHOOK_SECRET_A", "x")]));
        assert_eq!(
            d.source("a").unwrap().breaker,
            BreakerConfig { failures: 5, cooldown_secs: 10, max_cooldown_secs: 300 }
        );
        for (bad, field) in [
            (r#"{"provider":"stripe","rate_limit_per_sec":-1}"#, "rate_limit_per_sec"),
            (r#"{"provider":"stripe","rate_limit_per_sec":100000}"#, "rate_limit_per_sec"),
            (r#"{"provider":"stripe","breaker_cooldown_secs":0}"#, "breaker_cooldown_secs"),
            (
                r#"{"provider":"stripe","breaker_cooldown_secs":60,"breaker_max_cooldown_secs":30}"#,
                "breaker_max_cooldown_secs",
            ),
            (r#"{"provider":"stripe","stale":"later"}"#, "stale"),
            (r#"{"provider":"github","one_event_per_signature":"no"}"#, "one_event_per_signature"),
            (r#"{"provider":"stripe","ordering":{"entity":"id","version":"/v"}}"#, "ordering"),
            (r#"{"provider":"stripe","ordering":{"entity":"/id","version":"bad header"}}"#, "ordering"),
            (r#"{"provider":"stripe","ordering":true}"#, "ordering"),
        ] {
            let c = Config::load(Some(&format!(r#"{{"a":{bad}}}"#)), &env(&[("WEBHOOK_SECRET_A", "x")]));
            let body = c.source("a").err().map(|e| e.body()).unwrap_or_default();
            assert!(body.contains(field), "{bad}: {body}");
        }
    }
}
