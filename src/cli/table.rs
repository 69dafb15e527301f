//! The machinery of the flag table (ripgrep's `defs` split): the
//! [`flags!`] macro turns one declarative entry per flag into the raw
//! [`Cli`](super::Cli) struct (clap derive), the [`Flag`](super::Flag) enum
//! and its lookups (id, raw value, setter, legacy environment names, default,
//! v3 advice, environment list form). The entries themselves are in
//! `defs.rs`.
//!
//! A flag is named in code by its `Flag` variant, never by a string, so a
//! misspelt flag does not compile.

use super::{Secret, UrlArg};

/// How a flag's default is parsed; `config` maps each to its parser, and a
/// unit test there parses every default with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Go `time.ParseDuration`.
    Duration,
    /// Go `strconv.ParseBool`.
    Bool,
    /// Go `strconv.ParseInt(s, 0, 64)`.
    Int,
    /// Bytes with an optional `KiB`/`MiB` suffix.
    ByteSize,
    /// A signal name or number.
    Signal,
    /// A git ref name.
    Ref,
    /// An HTTP method token.
    HttpMethod,
    /// The incoming webhook's URL path.
    WebhookPath,
    /// `--log-format`: json or text.
    LogFormat,
    /// `--escaping-symlinks`: refuse, skip or allow.
    SymlinkPolicy,
    /// `--submodules`: recursive, shallow or off.
    Submodules,
    /// `--git-gc`: auto, always, aggressive or off.
    GitGc,
    /// An absolute path.
    AbsolutePath,
    /// An http(s) URL.
    HttpUrl,
    /// `--verify-signatures`: none, head, tag or tag-and-head.
    VerifyMode,
}

/// How a repeatable flag's environment variable holds several values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvList {
    /// One value (also: a JSON array kept as one raw string).
    One,
    /// Colon-separated (`GITSYNC_SSH_KEY_FILE`).
    Colon,
    /// Comma-separated; entries trimmed, empty ones dropped.
    Comma,
    /// One entry per line; a trailing CR dropped, blank lines skipped. HTTP
    /// header lines cannot contain a line break, so nothing needs escaping.
    Line,
}

/// A raw field of [`Cli`](super::Cli): read as one string, set from the
/// strings found in the environment.
pub trait RawValue {
    /// The value of a single-valued field as given (possibly empty); `None`
    /// when unset, and always for repeatable fields.
    fn single(&self) -> Option<&str>;
    /// Replaces the value: the last string wins for a single-valued field;
    /// an empty list clears the field.
    fn set(&mut self, values: Vec<String>);
}

/// A value type the raw struct keeps as the string the user typed.
pub trait RawString: From<String> {
    fn raw_str(&self) -> &str;
}

impl RawString for String {
    fn raw_str(&self) -> &str {
        self
    }
}

impl RawString for Secret {
    fn raw_str(&self) -> &str {
        self.expose()
    }
}

impl RawString for UrlArg {
    fn raw_str(&self) -> &str {
        self.expose()
    }
}

impl<T: RawString> RawValue for Option<T> {
    fn single(&self) -> Option<&str> {
        self.as_ref().map(RawString::raw_str)
    }
    fn set(&mut self, values: Vec<String>) {
        *self = values.into_iter().last().map(Into::into);
    }
}

impl<T: RawString> RawValue for Vec<T> {
    fn single(&self) -> Option<&str> {
        None
    }
    fn set(&mut self, values: Vec<String>) {
        *self = values.into_iter().map(Into::into).collect();
    }
}

/// `pick!(fallback; maybe)`: `maybe` when given, else `fallback` (for the
/// optional parts of a table entry).
macro_rules! pick {
    ($fallback:expr;) => {
        $fallback
    };
    ($fallback:expr; $value:expr) => {
        $value
    };
}
pub(crate) use pick;

/// Defines the raw struct and [`Flag`](super::Flag) from one entry per flag:
///
/// ```text
/// /// help text (clap doc comment)
/// #[arg(long, env = "GITSYNC_PERIOD", value_name = "DURATION")]
/// period: Option<String> => Period {
///     legacy: ["GIT_SYNC_PERIOD"],     // legacy environment names, in lookup order
///     default: "10s" as Duration,      // the default, shown in --help and used by config
///     shown: "--period",               // or: a default described, for --help only
///     v3: "use --ref instead",         // a deprecated v3 flag, and the advice given
///     list: Comma,                     // how the environment holds several values
/// },
/// ```
///
/// Every part in braces is optional but must come in this order. After a
/// `;`, fields that are not flags (no entry in `Flag`).
macro_rules! flags {
    (
        $(#[$smeta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident: $ty:ty => $variant:ident {
                    $(legacy: [$($legacy:literal),* $(,)?],)?
                    $(default: $default:literal as $syntax:ident,)?
                    $(shown: $shown:literal,)?
                    $(v3: $v3:literal,)?
                    $(list: $list:ident,)?
                }
            ),* $(,)?
            ;
            $(
                $(#[$xmeta:meta])*
                $xvis:vis $xfield:ident: $xty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$smeta])*
        pub struct $name {
            $(
                $(#[$fmeta])*
                pub $field: $ty,
            )*
            $(
                $(#[$xmeta])*
                $xvis $xfield: $xty,
            )*
        }

        /// One flag (or environment-only setting) of the raw struct.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Flag {
            $($variant,)*
        }

        impl Flag {
            /// Every flag, in the order of the table.
            pub const ALL: &'static [Flag] = &[$(Flag::$variant,)*];

            /// The clap argument id (the raw struct's field name).
            pub fn id(self) -> &'static str {
                match self {
                    $(Flag::$variant => stringify!($field),)*
                }
            }

            /// The flag whose clap argument id is `id`.
            pub fn from_id(id: &str) -> Option<Flag> {
                Flag::ALL.iter().copied().find(|f| f.id() == id)
            }

            /// Legacy environment names in lookup order: when several are
            /// set, the last one wins (as git-sync's `envString`).
            pub fn legacy_env(self) -> &'static [&'static str] {
                match self {
                    $(Flag::$variant => &[$($($legacy,)*)?],)*
                }
            }

            /// The default and how it is parsed (`None`: unset means off,
            /// or the default is derived from other flags).
            pub fn default_value(self) -> Option<(&'static str, $crate::cli::Syntax)> {
                match self {
                    $(Flag::$variant => pick!(None; $(Some(($default, $crate::cli::Syntax::$syntax)))?),)*
                }
            }

            /// The `[default: …]` shown in `--help`.
            pub fn shown_default(self) -> Option<&'static str> {
                match self {
                    $(Flag::$variant => pick!(None; $(Some($default))? $(Some($shown))?),)*
                }
            }

            /// For a deprecated v3 flag, the advice ("use --ref instead").
            pub fn v3_advice(self) -> Option<&'static str> {
                match self {
                    $(Flag::$variant => pick!(None; $(Some($v3))?),)*
                }
            }

            /// How the environment variable holds several values.
            pub fn env_list(self) -> $crate::cli::EnvList {
                match self {
                    $(Flag::$variant => pick!($crate::cli::EnvList::One; $($crate::cli::EnvList::$list)?),)*
                }
            }

            /// The raw value of a single-valued flag as given (possibly
            /// empty); `None` when unset and for repeatable flags.
            pub fn value(self, cli: &$name) -> Option<&str> {
                match self {
                    $(Flag::$variant => $crate::cli::RawValue::single(&cli.$field),)*
                }
            }

            /// Sets the flag's field from environment strings.
            pub(super) fn set(self, cli: &mut $name, values: Vec<String>) {
                match self {
                    $(Flag::$variant => $crate::cli::RawValue::set(&mut cli.$field, values),)*
                }
            }
        }
    };
}
pub(crate) use flags;

/// Appends the table's `[default: …]` to a flag's help (clap derive calls
/// this through `#[command(mut_args = …)]`, after the arguments are added).
pub fn show_default(arg: clap::Arg) -> clap::Arg {
    let Some(default) = super::Flag::from_id(arg.get_id().as_str()).and_then(|f| f.shown_default())
    else {
        return arg;
    };
    let suffix = format!("[default: {default}]");
    let help = arg.get_help().map(|h| format!("{h} {suffix}"));
    let long_help = arg.get_long_help().map(|h| format!("{h} {suffix}"));
    let arg = match help {
        Some(h) => arg.help(h),
        None => arg,
    };
    match long_help {
        Some(h) => arg.long_help(h),
        None => arg,
    }
}
