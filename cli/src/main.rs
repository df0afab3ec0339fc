//! `edgehook`: work locally with real providers' webhook formats.
//!
//! - `edgehook sign <provider> --secret S [--body FILE] [--timestamp T] [--id ID] [--url URL]`
//!   prints the exact headers the provider would send (and the body, where the provider signs
//!   inside it);
//! - `edgehook send <source> [--url http://127.0.0.1:8787] [--body FILE]` signs a sample (or the
//!   given) event with the source's provider and secret, read from `.dev.vars`, POSTs it to
//!   edgehook, and prints the answer;
//! - `edgehook providers` lists the providers;
//! - `edgehook events|dead-letters|flags|health|metrics ...` operate a running edgehook through
//!   its admin API (see [`admin`]), as tables or, with `--json`, as the API's JSON.
//!
//! Everything here is the core's own `sign` for each provider: what the CLI sends is what the
//! worker's tests verify.

mod admin;
mod samples;

use edgehook_core::config::{secret_var, Config};
use edgehook_core::providers::generic::GenericScheme;
use edgehook_core::providers::{Provider, Signed, Unsigned};
use edgehook_core::secret::{SecretEncoding, SigningKey};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
usage:
  edgehook sign <provider> --secret S [--body FILE] [--timestamp T] [--id ID] [--url URL] [--scheme JSON]
  edgehook send <source> [--url BASE] [--body FILE] [--dev-vars PATH] [--secret S] [--signing-key K] [--id ID]
  edgehook providers
  edgehook events [--source S] [--status X] [--type T] [--limit N] [--cursor C]
  edgehook events show <source> <id>
  edgehook events replay <source> <id>
  edgehook events replay [--source S] [--status X] [--type T] [--limit N] [--cursor C]
  edgehook dead-letters [--source S] [--cursor C]
  edgehook dead-letters show <source> <id>
  edgehook dead-letters delete <source> <id>
  edgehook dead-letters replay [--source S] [--id ID]
  edgehook flags
  edgehook flags set <source> <pattern> <on|paused|dropped>
  edgehook health
  edgehook metrics

sign   prints the headers <provider> would send for the body (a sample body without --body).
       For asymmetric providers (discord, sendgrid, standard with v1a) --secret is the private key:
       discord: 32-byte seed in hex; sendgrid: base64 PKCS#8 DER (PEM accepted); standard: whsk_...
       --scheme gives a generic source's fields as JSON ({\"header\":\"x-sig\",...}).
send   signs with the source's provider and secret from .dev.vars (SOURCES, WEBHOOK_SECRET_<SOURCE>;
       the first secret of a rotation list) and POSTs to BASE/webhooks/<source>
       (BASE defaults to http://127.0.0.1:$PORT, PORT to 8787).
events, dead-letters, flags, health, metrics
       call the admin API at --url BASE (same default) with the token from --token, else
       $EDGEHOOK_ADMIN_TOKEN, else ADMIN_TOKEN in .dev.vars (--dev-vars PATH). --json prints the
       API's JSON instead of a table. `health` exits with 1 when edgehook is degraded.";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("edgehook: {message}");
            ExitCode::from(2)
        }
    }
}

#[derive(Default)]
pub struct Args {
    command: String,
    /// Positional arguments after the command.
    rest: Vec<String>,
    secret: Option<String>,
    signing_key: Option<String>,
    body: Option<PathBuf>,
    timestamp: Option<i64>,
    id: Option<String>,
    url: Option<String>,
    dev_vars: Option<PathBuf>,
    scheme: Option<String>,
    token: Option<String>,
    json: bool,
    source: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl Args {
    fn target(&self) -> Option<&str> {
        self.rest.first().map(String::as_str)
    }
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args::default();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("secret") => args.secret = Some(parser.value()?.string()?),
            Long("signing-key") => args.signing_key = Some(parser.value()?.string()?),
            Long("body") => args.body = Some(parser.value()?.into()),
            Long("timestamp") => args.timestamp = Some(parser.value()?.parse()?),
            Long("id") => args.id = Some(parser.value()?.string()?),
            Long("url") => args.url = Some(parser.value()?.string()?),
            Long("dev-vars") => args.dev_vars = Some(parser.value()?.into()),
            Long("scheme") => args.scheme = Some(parser.value()?.string()?),
            Long("token") => args.token = Some(parser.value()?.string()?),
            Long("json") => args.json = true,
            Long("source") => args.source = Some(parser.value()?.string()?),
            Long("status") => args.status = Some(parser.value()?.string()?),
            Long("type") => args.event_type = Some(parser.value()?.string()?),
            Long("limit") => args.limit = Some(parser.value()?.parse()?),
            Long("cursor") => args.cursor = Some(parser.value()?.string()?),
            Short('h') | Long("help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            Value(v) if args.command.is_empty() => args.command = v.string()?,
            Value(v) => args.rest.push(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(args)
}

fn run() -> Result<(), String> {
    let args = parse_args().map_err(|e| format!("{e}\n{USAGE}"))?;
    match args.command.as_str() {
        "sign" => sign(&args),
        "send" => send(&args),
        "providers" => {
            for p in Provider::ALL {
                println!("{}", p.name());
            }
            Ok(())
        }
        "events" | "dead-letters" | "flags" | "health" | "metrics" => admin::run(&args),
        "" => Err(USAGE.into()),
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// A fresh event id: time-based, so that each `send` is a new event.
fn fresh_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("evt_cli_{nanos:x}")
}

/// Headers as name and value.
type HeaderPairs = Vec<(String, String)>;

/// The body to sign, and the provider's extra headers when it is the sample.
fn body_for(provider: Provider, path: Option<&PathBuf>, id: &str) -> Result<(Vec<u8>, HeaderPairs), String> {
    let (sample, extra) = samples::sample(provider);
    let extra: HeaderPairs = extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    match path {
        Some(path) => {
            let body = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok((body, extra))
        }
        None => {
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
            let body = sample.replace("{{id}}", id).replace("{{now_ms}}", &now_ms.to_string());
            Ok((body.into_bytes(), extra))
        }
    }
}

fn provider_named(name: &str) -> Result<Provider, String> {
    Provider::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
        format!("unknown provider {name:?}; one of: {}", names.join(", "))
    })
}

fn signing_key(provider: Provider, text: &str) -> Result<SigningKey, String> {
    SigningKey::parse(text, provider.secret_encoding()).map_err(|e| format!("the signing key: {e}"))
}

/// A generic scheme from `--scheme` JSON (the fields of a generic source).
fn scheme_from_json(json: &str) -> Result<GenericScheme, String> {
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("--scheme: {e}"))?;
    fields.insert("provider".into(), "generic".into());
    let sources = serde_json::json!({ "cli": fields }).to_string();
    let config = Config::load(Some(&sources), &|name| (name == secret_var("cli")).then(|| "unused".to_owned()));
    let source = config.source("cli").map_err(|e| format!("--scheme: {}", e.body()))?;
    source.generic.clone().ok_or_else(|| "--scheme: not a generic scheme".into())
}

fn print_signed(signed: &Signed, body: &[u8], extra: &[(String, String)]) {
    for (name, value) in extra.iter().chain(signed.headers.0.iter()) {
        println!("{name}: {value}");
    }
    if signed.body != body {
        println!();
        println!("{}", String::from_utf8_lossy(&signed.body));
    }
}

fn sign(args: &Args) -> Result<(), String> {
    let provider = provider_named(args.target().ok_or("sign: which provider?")?)?;
    let secret = args.secret.as_deref().ok_or("sign: --secret is required")?;
    let key = signing_key(provider, secret)?;
    let generic = match (provider, &args.scheme) {
        (Provider::Generic, Some(json)) => Some(scheme_from_json(json)?),
        (Provider::Generic, None) => return Err("sign generic: --scheme is required".into()),
        _ => None,
    };
    let id = args.id.clone().unwrap_or_else(fresh_id);
    let (body, extra) = body_for(provider, args.body.as_ref(), &id)?;
    // The provider's other headers (event type and the like) go with its sample, not a given body.
    let extra = if args.body.is_some() { Vec::new() } else { extra };
    let url = args.url.as_deref().unwrap_or("https://example.com/webhooks");
    let unsigned =
        Unsigned { method: "POST", url, body: &body, id: &id, timestamp: args.timestamp.unwrap_or_else(now) };
    print_signed(&provider.sign(&key, unsigned, generic.as_ref()), &body, &extra);
    Ok(())
}

/// Reads a `.dev.vars` file (dotenv syntax).
fn read_dev_vars(path: &std::path::Path) -> Result<BTreeMap<String, String>, String> {
    let entries = dotenvy::from_path_iter(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    entries.map(|entry| entry.map_err(|e| dev_vars_error(path, e))).collect()
}

/// A `.dev.vars` error without the line's text: dotenvy's message quotes the line, value and
/// all, and the values there are secrets. The variable's name is safe to show.
fn dev_vars_error(path: &std::path::Path, error: dotenvy::Error) -> String {
    let dotenvy::Error::LineParse(line, _) = error else {
        return format!("{}: {error}", path.display());
    };
    let line = line.trim_start();
    let name = line.strip_prefix("export ").unwrap_or(line).split_once('=').map(|(name, _)| name.trim());
    match name.filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')) {
        Some(name) => format!(
            "{}: the line setting {name} could not be parsed (quote a value that holds spaces, quotes or backslashes)",
            path.display()
        ),
        None => format!("{}: a line could not be parsed", path.display()),
    }
}

/// Where edgehook runs: `--url`, else `http://127.0.0.1:$PORT` (8787), without a trailing `/`.
fn base_url(args: &Args) -> String {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", std::env::var("PORT").unwrap_or_else(|_| "8787".into())));
    base.trim_end_matches('/').to_owned()
}

fn send(args: &Args) -> Result<(), String> {
    let source_name = args.target().ok_or("send: which source?")?;
    let path = args.dev_vars.clone().unwrap_or_else(|| PathBuf::from(".dev.vars"));
    let vars = if path.exists() { read_dev_vars(&path)? } else { BTreeMap::new() };
    let sources = vars.get("SOURCES").ok_or_else(|| format!("no SOURCES in {}", path.display()))?;
    let secret_name = secret_var(source_name);
    let config = Config::load(Some(sources), &|name| {
        if name == secret_name {
            args.secret.clone().or_else(|| vars.get(name).cloned())
        } else {
            vars.get(name).cloned()
        }
    });
    let source = config.source(source_name).map_err(|e| format!("source {source_name}: {}", e.body()))?;
    let provider = source.provider;
    let key = match &args.signing_key {
        Some(text) => signing_key(provider, text)?,
        None if provider.secret_encoding() == SecretEncoding::Ed25519Hex
            || provider.secret_encoding() == SecretEncoding::P256Public =>
        {
            return Err(format!("{} signs with a private key: give it with --signing-key", provider.name()));
        }
        None => {
            let raw = args
                .secret
                .clone()
                .or_else(|| vars.get(&secret_name).cloned())
                .ok_or_else(|| format!("{secret_name} is not set"))?;
            let first = match serde_json::from_str::<Vec<String>>(&raw) {
                Ok(list) => list.into_iter().next().ok_or_else(|| format!("{secret_name} is an empty list"))?,
                Err(_) => raw,
            };
            signing_key(provider, &first)?
        }
    };
    let url = format!("{}/webhooks/{source_name}", base_url(args));
    let signed_url = source.public_url.clone().unwrap_or_else(|| url.clone());
    let id = args.id.clone().unwrap_or_else(fresh_id);
    let (body, extra) = body_for(provider, args.body.as_ref(), &id)?;
    let unsigned = Unsigned { method: "POST", url: &signed_url, body: &body, id: &id, timestamp: now() };
    let signed = provider.sign(&key, unsigned, source.generic.as_ref());

    let mut request = ureq::post(&url);
    for (name, value) in extra.iter().chain(signed.headers.0.iter()) {
        request = request.set(name, value);
    }
    let response = match request.send_bytes(&signed.body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(format!("POST {url}: {e}")),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    println!("{status} {text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line dotenvy cannot parse is named by its variable, never quoted: its value is a secret.
    #[test]
    fn dev_vars_errors_never_show_a_value() {
        let path = std::env::temp_dir().join(format!("edgehook-dev-vars-{}", std::process::id()));
        for (text, named) in [
            ("ADMIN_TOKEN=t0k\\qen's\n", Some("ADMIN_TOKEN")),
            ("A=1\nexport WEBHOOK_SECRET_DEMO=my 'secret\n", Some("WEBHOOK_SECRET_DEMO")),
            ("not a line 'secret\n", None),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = read_dev_vars(&path).unwrap_err();
            assert!(!error.contains("secret") || named == Some("WEBHOOK_SECRET_DEMO"), "{error}");
            assert!(!error.contains("t0k") && !error.contains("my '"), "{error}");
            match named {
                Some(name) => {
                    assert!(error.contains(&format!("the line setting {name} could not be parsed")), "{error}")
                }
                None => assert!(error.ends_with("a line could not be parsed"), "{error}"),
            }
        }
        std::fs::remove_file(&path).unwrap();
    }

    /// A sample sent twice must be two signed requests where the provider's ids are unsigned:
    /// edgehook records a resent one as `dropped` (one signature, one event).
    #[test]
    fn samples_of_sealed_providers_differ_from_send_to_send() {
        for provider in Provider::ALL {
            let (body, _) = samples::sample(provider);
            if provider.seal_by(None).is_some() {
                assert!(body.contains("{{id}}") || body.contains("{{now_ms}}"), "{}: {body}", provider.name());
            }
        }
    }
}
