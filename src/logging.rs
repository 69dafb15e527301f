//! Structured logs on stderr: JSON by default, in git-sync's shape, or text.
//! `-v` sets the level (0 = info, 1-5 = debug, 6+ = trace); `RUST_LOG`, when
//! set, overrides it with a full filter.
//!
//! git-sync logs through go-logr's `funcr` JSON formatter, and log alerts
//! match on its keys, so a JSON line here has the same keys in the same order:
//!
//! ```text
//! {"logger":"","ts":"2024-01-01 12:00:00.000000","caller":{"file":"src/app.rs","line":12},"level":0,"msg":"...","key":"value"}
//! {"logger":"","ts":"...","caller":{...},"msg":"...","error":"...","key":"value"}
//! ```
//!
//! * `ts`: funcr's default `2006-01-02 15:04:05.000000`, in UTC (Go prints
//!   local time, which is UTC in a container).
//! * `caller`: `{"file","line"}`; the file is the source path in this crate
//!   (`src/sync/engine.rs`, since many files are called `mod.rs`) where funcr
//!   has the Go file's base name.
//! * `level`: logr's V-level, the lowest `-v` that shows the line: 0 for info
//!   and warnings, 1 for debug, 6 for trace. Error lines have no `level` and
//!   carry `"error"` (the event's `error` field, or `null`), as funcr writes
//!   `logr.Error`.
//! * Values are JSON: numbers, booleans, strings, and arrays or objects for
//!   fields logged through [`json`]. `%display` and `?debug` fields become
//!   strings, so call sites log plain fields or [`json`], never `?` on a
//!   struct (its Rust `Debug` text is no use to a log query).

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write as _};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat, verbosity: u8) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(verbosity)));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry.with(JsonLayer).try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    // Colour codes only for a person at a terminal, never
                    // into a file or a log collector.
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
    };
}

fn default_filter(verbosity: u8) -> String {
    let level = match verbosity {
        0 => "info",
        1..=5 => "debug",
        _ => "trace",
    };
    // Dependencies only at -v 9: what they report (rustls's "failed to
    // verify TLS certificate") the sync's own error says with its cause,
    // and their lines lack git-sync's fields (a second error line per
    // failure, with no caller, would count twice in log alerts).
    if verbosity >= 9 {
        level.to_string()
    } else {
        format!("off,git_sidecar={level}")
    }
}

/// A field value that the JSON log writes as JSON (an array, an object):
/// `tracing::info!(removed = ?logging::json(&names), "...")`. In text logs
/// it shows as compact JSON too.
pub fn json<T: serde::Serialize>(value: &T) -> Json {
    Json(serde_json::to_value(value).unwrap_or(Value::Null))
}

/// See [`json`].
pub struct Json(Value);

/// Starts the text [`Json`] hands to the JSON layer: tracing passes field
/// values only as `Debug`, so this is how the layer tells them apart.
const RAW_MARK: char = '\u{0}';

thread_local! {
    /// Set while the JSON layer formats a field, so that [`Json`] marks its text.
    static FORMATTING_JSON: Cell<bool> = const { Cell::new(false) };
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if FORMATTING_JSON.with(Cell::get) {
            f.write_char(RAW_MARK)?;
        }
        write!(f, "{}", self.0)
    }
}

/// Writes each event as one git-sync style JSON line on stderr.
struct JsonLayer;

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut line = render(event, &timestamp());
        line.push('\n');
        // One write per line, so lines from several threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// funcr's default timestamp format, `2006-01-02 15:04:05.000000`, in UTC.
fn timestamp() -> String {
    let rfc = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    rfc.trim_end_matches('Z').replacen('T', " ", 1)
}

/// The JSON line (without newline) for one event.
fn render(event: &Event<'_>, ts: &str) -> String {
    let meta = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);

    let mut out: Vec<(String, Value)> = vec![
        ("logger".into(), Value::String(String::new())),
        ("ts".into(), Value::String(ts.to_string())),
        ("caller".into(), caller(meta.file(), meta.line())),
    ];
    let is_error = *meta.level() == Level::ERROR;
    if !is_error {
        out.push(("level".into(), Value::from(v_level(meta.level()))));
    }
    out.push(("msg".into(), Value::String(fields.msg)));
    if let Some(error) = fields.error {
        out.push(("error".into(), error));
    } else if is_error {
        out.push(("error".into(), Value::Null));
    }
    out.extend(fields.pairs);
    object_text(&out)
}

/// A JSON object with its keys in the given order (funcr's order).
fn object_text(pairs: &[(String, Value)]) -> String {
    let mut text = String::from("{");
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&Value::String(key.clone()).to_string());
        text.push(':');
        text.push_str(&value.to_string());
    }
    text.push('}');
    text
}

/// The logr V-level of a tracing level: the lowest `-v` that shows it.
fn v_level(level: &Level) -> u8 {
    match *level {
        Level::TRACE => 6,
        Level::DEBUG => 1,
        _ => 0,
    }
}

fn caller(file: Option<&str>, line: Option<u32>) -> Value {
    let file = match file {
        // Dependencies report absolute paths into the cargo registry.
        Some(f) if f.starts_with('/') => f.rsplit('/').next().unwrap_or(f),
        Some(f) => f,
        None => "<unknown>",
    };
    serde_json::json!({ "file": file, "line": line.unwrap_or(0) })
}

/// An event's message, its `error` field and the other fields, in order.
#[derive(Default)]
struct Fields {
    msg: String,
    error: Option<Value>,
    pairs: Vec<(String, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.msg = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            "error" => self.error = Some(value),
            // Records bridged from the `log` crate: funcr has no such keys.
            name if name.starts_with("log.") => {}
            name => self.pairs.push((name.to_string(), value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let v = i64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, v);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let v = u64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, v);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        FORMATTING_JSON.with(|f| f.set(true));
        let text = format!("{value:?}");
        FORMATTING_JSON.with(|f| f.set(false));
        let value = match text.strip_prefix(RAW_MARK) {
            Some(raw) => serde_json::from_str(raw).unwrap_or(Value::String(raw.to_string())),
            None => Value::String(text),
        };
        self.put(field, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects the JSON lines of the events logged inside `f`.
    fn capture(f: impl FnOnce()) -> Vec<Value> {
        capture_raw(f)
            .iter()
            .map(|l| serde_json::from_str(l).expect("valid JSON"))
            .collect()
    }

    fn capture_raw(f: impl FnOnce()) -> Vec<String> {
        capture_filtered(EnvFilter::new("trace"), f)
    }

    fn capture_filtered(filter: EnvFilter, f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<String>>>);
        impl<S: Subscriber> Layer<S> for Lines {
            fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
                let line = render(event, "2024-01-01 12:00:00.000000");
                self.0.lock().expect("lock").push(line);
            }
        }
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(lines.clone());
        tracing::subscriber::with_default(subscriber, f);
        let lines = lines.0.lock().expect("lock").clone();
        lines
    }

    /// The top-level keys of a JSON object line, in their order.
    fn keys(line: &str) -> Vec<String> {
        let value: Value = serde_json::from_str(line).expect("valid JSON");
        let mut keys: Vec<(usize, String)> = value
            .as_object()
            .expect("object")
            .keys()
            .map(|k| {
                let at = line.find(&format!("\"{k}\":")).expect("key in line");
                (at, k.clone())
            })
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| k).collect()
    }

    #[test]
    fn info_lines_have_git_syncs_keys_in_its_order() {
        let raw = capture_raw(|| tracing::info!(count = 3, ok = true, name = "x", "hello"));
        let line: Value = serde_json::from_str(&raw[0]).expect("valid JSON");
        assert_eq!(
            keys(&raw[0]),
            ["logger", "ts", "caller", "level", "msg", "count", "ok", "name"]
        );
        assert_eq!(line["logger"], "");
        assert_eq!(line["level"], 0);
        assert_eq!(line["msg"], "hello");
        assert_eq!(line["count"], 3);
        assert_eq!(line["ok"], true);
        assert_eq!(line["caller"]["file"], "src/logging.rs");
        assert!(line["caller"]["line"].as_u64().is_some_and(|n| n > 0));
    }

    #[test]
    fn errors_have_no_level_and_an_error_key() {
        let raw = capture_raw(|| {
            tracing::error!(error = %"boom", attempt = 2, "sync failed");
            tracing::error!("no error field");
        });
        assert_eq!(
            keys(&raw[0]),
            ["logger", "ts", "caller", "msg", "error", "attempt"]
        );
        let lines: Vec<Value> = raw
            .iter()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        let first = &lines[0];
        assert_eq!(first["error"], "boom");
        assert_eq!(lines[1]["error"], Value::Null);
        assert!(lines[1].get("level").is_none());
    }

    /// A dependency's own error (rustls logs one for every rejected
    /// certificate) is not a second error line beside the sync's, below -v 9.
    #[test]
    fn dependencies_are_heard_only_at_verbosity_nine() {
        let emit = || {
            tracing::error!(target: "rustls::conn", "failed to verify TLS certificate");
            tracing::info!("ours");
        };
        for v in [0, 5, 8] {
            let lines = capture_filtered(EnvFilter::new(default_filter(v)), emit);
            assert_eq!(lines.len(), 1, "-v {v}: {lines:?}");
            assert!(lines[0].contains("\"msg\":\"ours\""), "{lines:?}");
        }
        let lines = capture_filtered(EnvFilter::new(default_filter(9)), emit);
        assert_eq!(lines.len(), 2, "{lines:?}");
    }

    #[test]
    fn levels_are_logr_v_levels() {
        let lines = capture(|| {
            tracing::warn!("w");
            tracing::debug!("d");
            tracing::trace!("t");
        });
        let levels: Vec<&Value> = lines.iter().map(|l| &l["level"]).collect();
        assert_eq!(levels, [&Value::from(0), &Value::from(1), &Value::from(6)]);
    }

    #[test]
    fn json_fields_are_real_arrays_and_debug_fields_strings() {
        let names = vec!["a".to_string(), "b".to_string()];
        let lines = capture(|| tracing::info!(names = ?json(&names), text = ?"q", "m"));
        assert_eq!(lines[0]["names"], serde_json::json!(["a", "b"]));
        assert_eq!(lines[0]["text"], "\"q\"");
        // Outside the JSON layer it is plain compact JSON.
        assert_eq!(format!("{:?}", json(&names)), r#"["a","b"]"#);
    }

    #[test]
    fn timestamps_have_funcrs_format() {
        let ts = timestamp();
        assert_eq!(ts.len(), "2024-01-01 12:00:00.000000".len(), "{ts}");
        assert_eq!(&ts[10..11], " ");
        assert_eq!(&ts[19..20], ".");
    }
}
