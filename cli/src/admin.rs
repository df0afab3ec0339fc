//! `edgehook events|dead-letters|flags|health|metrics`: the admin API from a terminal.
//!
//! Each subcommand is one or a few calls to `/admin/*`; the output is a small table, or the
//! API's JSON with `--json` (for scripts: `edgehook events --status dead --json | jq ...`).

use crate::{base_url, read_dev_vars, Args};
use serde_json::Value;
use std::path::PathBuf;

pub fn run(args: &Args) -> Result<(), String> {
    let api = Api { base: base_url(args), token: token(args)? };
    let sub: Vec<&str> = args.rest.iter().map(String::as_str).collect();
    match (args.command.as_str(), sub.as_slice()) {
        ("events", [] | ["list"]) => {
            let query = query(&[
                ("source", args.source.as_deref()),
                ("status", args.status.as_deref()),
                ("type", args.event_type.as_deref()),
                ("limit", args.limit.map(|n| n.to_string()).as_deref()),
                ("cursor", args.cursor.as_deref()),
            ]);
            let page = api.call("GET", &format!("/admin/events{query}"))?;
            output(args, &page, || {
                table(
                    &["received", "source", "id", "type", "status", "attempts", "replays"],
                    rows(&page["events"], |e| {
                        vec![
                            time(&e["received_at_ms"]),
                            s(&e["source"]),
                            s(&e["id"]),
                            s(&e["type"]),
                            s(&e["status"]),
                            s(&e["attempts"]),
                            s(&e["replays"]),
                        ]
                    }),
                );
                if let Some(cursor) = page["cursor"].as_str() {
                    println!("more: --cursor {cursor}");
                }
            })
        }
        ("events", ["show", source, id]) => {
            let event = api.call("GET", &format!("/admin/events/{source}/{}", encode(id)))?;
            output(args, &event, || {
                println!("{}/{}  {}  {}", s(&event["source"]), s(&event["id"]), s(&event["type"]), s(&event["status"]));
                println!("received {}  content-type {}", time(&event["received_at_ms"]), s(&event["content_type"]));
                println!();
                table(
                    &["attempt", "at", "status", "latency", "error", "replay"],
                    rows(&event["attempts"], |a| {
                        vec![
                            s(&a["attempt"]),
                            time(&a["at_ms"]),
                            s(&a["status"]),
                            format!("{} ms", s(&a["latency_ms"])),
                            s(&a["error"]),
                            if a["replay"] == true { "yes".into() } else { String::new() },
                        ]
                    }),
                );
                println!();
                for h in event["headers"].as_array().into_iter().flatten() {
                    println!("{}: {}", s(&h["name"]), s(&h["value"]));
                }
                println!();
                match event["body"].as_str() {
                    Some(body) => println!("{body}"),
                    None if event["body_omitted"] == true => {
                        println!("(body over 1 MiB: not shown; a replay delivers it)")
                    }
                    None if event["body_available"] == false => println!("(body no longer kept)"),
                    None => println!("(binary body, base64) {}", s(&event["body_base64"])),
                }
            })
        }
        ("events", ["replay", source, id]) => {
            let reply = api.call("POST", &format!("/admin/events/{source}/{}/replay", encode(id)))?;
            output(args, &reply, || println!("replaying {source}/{id}"))
        }
        ("events", ["replay"]) => {
            let query = query(&[
                ("source", args.source.as_deref()),
                ("status", args.status.as_deref()),
                ("type", args.event_type.as_deref()),
                ("limit", args.limit.map(|n| n.to_string()).as_deref()),
                ("cursor", args.cursor.as_deref()),
            ]);
            let reply = api.call("POST", &format!("/admin/events/replay{query}"))?;
            output(args, &reply, || {
                println!("replayed {} event(s)", s(&reply["replayed"]));
                // Without the cursor, a second call would start from the newest again.
                if let Some(cursor) = reply["cursor"].as_str() {
                    println!("more are left: run it again with --cursor {cursor}");
                }
            })
        }
        ("dead-letters", [] | ["list"]) => {
            let query = query(&[("source", args.source.as_deref()), ("cursor", args.cursor.as_deref())]);
            let page = api.call("GET", &format!("/admin/dead-letters{query}"))?;
            output(args, &page, || {
                table(
                    &["dead at", "source", "id", "type", "attempts", "error"],
                    rows(&page["dead_letters"], |d| {
                        vec![
                            time(&d["dead_at_ms"]),
                            s(&d["source"]),
                            s(&d["id"]),
                            s(&d["type"]),
                            s(&d["attempts"]),
                            unconfirmed(&d["unconfirmed"], s(&d["error"])),
                        ]
                    }),
                );
                if let Some(cursor) = page["cursor"].as_str() {
                    println!("more: --cursor {cursor}");
                }
            })
        }
        ("dead-letters", ["show", source, id]) => {
            let letter = api.call("GET", &format!("/admin/dead-letters/{source}/{}", encode(id)))?;
            output(args, &letter, || println!("{}", serde_json::to_string_pretty(&letter).unwrap_or_default()))
        }
        ("dead-letters", ["delete", source, id]) => {
            let reply = api.call("DELETE", &format!("/admin/dead-letters/{source}/{}", encode(id)))?;
            output(args, &reply, || println!("deleted dead letter {source}/{id}"))
        }
        ("dead-letters", ["replay"]) => {
            let query = query(&[("source", args.source.as_deref()), ("id", args.id.as_deref())]);
            let reply = api.call("POST", &format!("/admin/dead-letters/replay{query}"))?;
            output(args, &reply, || println!("replayed {} dead letter(s){}", s(&reply["replayed"]), more_left(&reply)))
        }
        ("flags", [] | ["list"]) => {
            let flags = api.call("GET", "/admin/flags")?;
            output(args, &flags, || {
                table(
                    &["source", "event types", "mode", "set at"],
                    rows(&flags["flags"], |f| {
                        vec![s(&f["source"]), s(&f["pattern"]), s(&f["mode"]), time(&f["updated_ms"])]
                    }),
                )
            })
        }
        ("flags", ["set", source, pattern, mode]) => {
            let body = serde_json::json!({ "mode": mode }).to_string();
            let reply = api.send("PUT", &format!("/admin/flags/{source}/{}", encode(pattern)), &body)?;
            output(args, &reply, || {
                println!("{source} {pattern}: {mode}");
                if reply["resumed"].as_u64().unwrap_or(0) > 0 {
                    println!("resumed {} held event(s)", s(&reply["resumed"]));
                }
            })
        }
        ("health", []) => {
            let report = api.call("GET", "/admin/health")?;
            output(args, &report, || {
                println!("{}", s(&report["status"]));
                let age = report["heartbeat_age_secs"].as_f64().map_or("never".into(), |a| format!("{a:.0}s ago"));
                println!("heartbeat        {age}");
                println!("processing lag   {:.0}s", report["processing_lag_secs"].as_f64().unwrap_or(0.0));
                println!("dead letters     {} (+{})", s(&report["dead_letters"]), s(&report["dead_letter_growth"]));
                println!(
                    "attempts         {} ok, {} failed",
                    s(&report["attempts_succeeded"]),
                    s(&report["attempts_failed"])
                );
                for reason in report["reasons"].as_array().into_iter().flatten() {
                    println!("- {}", s(reason));
                }
            })?;
            if report["status"] != "ok" {
                std::process::exit(1);
            }
            Ok(())
        }
        ("metrics", []) => {
            if args.json {
                let metrics = api.call("GET", "/admin/metrics?format=json")?;
                println!("{metrics}");
            } else {
                print!("{}", api.text("/admin/metrics")?);
            }
            Ok(())
        }
        (command, sub) => Err(format!("edgehook {command}: unknown arguments {sub:?} (see --help)")),
    }
}

/// The admin token: `--token`, `$EDGEHOOK_ADMIN_TOKEN`, or `ADMIN_TOKEN` in `.dev.vars`.
fn token(args: &Args) -> Result<String, String> {
    if let Some(token) = &args.token {
        return Ok(token.clone());
    }
    if let Ok(token) = std::env::var("EDGEHOOK_ADMIN_TOKEN") {
        return Ok(token);
    }
    let path = args.dev_vars.clone().unwrap_or_else(|| PathBuf::from(".dev.vars"));
    if path.exists() {
        if let Some(token) = read_dev_vars(&path)?.remove("ADMIN_TOKEN") {
            return Ok(token);
        }
    }
    Err("no admin token: give --token, set EDGEHOOK_ADMIN_TOKEN, or put ADMIN_TOKEN in .dev.vars".into())
}

struct Api {
    base: String,
    token: String,
}

impl Api {
    fn call(&self, method: &str, path: &str) -> Result<Value, String> {
        self.send(method, path, "")
    }

    fn send(&self, method: &str, path: &str, body: &str) -> Result<Value, String> {
        let text = self.request(method, path, body)?;
        serde_json::from_str(&text).map_err(|e| format!("{method} {path}: the answer is not JSON ({e})"))
    }

    fn text(&self, path: &str) -> Result<String, String> {
        self.request("GET", path, "")
    }

    fn request(&self, method: &str, path: &str, body: &str) -> Result<String, String> {
        let url = format!("{}{path}", self.base);
        let request = ureq::request(method, &url).set("authorization", &format!("Bearer {}", self.token));
        let result = if body.is_empty() {
            request.call()
        } else {
            request.set("content-type", "application/json").send_string(body)
        };
        match result {
            Ok(response) => response.into_string().map_err(|e| format!("{method} {path}: {e}")),
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                Err(format!("{method} {path}: {status} {text}"))
            }
            Err(e) => Err(format!("{method} {path}: {e}")),
        }
    }
}

/// Prints `value` as JSON with `--json`, else runs `human`.
fn output(args: &Args, value: &Value, human: impl FnOnce()) -> Result<(), String> {
    if args.json {
        println!("{value}");
    } else {
        human();
    }
    Ok(())
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs.iter().filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v)))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes everything but unreserved characters (and `*`, which patterns use).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A replay's note that it stopped at its per-call limit.
fn more_left(reply: &Value) -> &'static str {
    if reply["more"] == true {
        "; more are left: run it again"
    } else {
        ""
    }
}

/// A JSON value as table text: strings bare, null empty.
fn s(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A dead letter's error, marked when the letter is unconfirmed (another copy of its message may
/// have completed the event: see the README, "Dead letters and alerts").
fn unconfirmed(flag: &Value, error: String) -> String {
    if flag.as_bool() == Some(true) {
        format!("{error} (unconfirmed: check the event before replaying)")
    } else {
        error
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SSZ` (UTC).
fn time(value: &Value) -> String {
    let Some(ms) = value.as_i64() else {
        return String::new();
    };
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

fn rows(list: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array().into_iter().flatten().map(row).collect()
}

/// Columns padded to their widest cell.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    if rows.is_empty() {
        println!("(none)");
    }
    for row in rows {
        line(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(&Value::from(0)), "1970-01-01 00:00:00Z");
        assert_eq!(time(&Value::from(1_700_000_000_123_i64)), "2023-11-14 22:13:20Z");
        assert_eq!(time(&Value::from(951_782_400_000_i64)), "2000-02-29 00:00:00Z");
        assert_eq!(time(&Value::Null), "");
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            query(&[("source", Some("stripe")), ("type", Some("a b/c")), ("cursor", None)]),
            "?source=stripe&type=a%20b%2Fc"
        );
        assert_eq!(query(&[("source", None)]), "");
        assert_eq!(encode("invoice.*"), "invoice.*");
        assert_eq!(encode("orders/create"), "orders%2Fcreate");
    }

    #[test]
    fn unconfirmed_letters_say_so() {
        let error = || "destination answered 500".to_owned();
        assert_eq!(unconfirmed(&Value::Bool(false), error()), "destination answered 500");
        assert_eq!(unconfirmed(&Value::Null, error()), "destination answered 500");
        assert_eq!(
            unconfirmed(&Value::Bool(true), error()),
            "destination answered 500 (unconfirmed: check the event before replaying)"
        );
    }
}
