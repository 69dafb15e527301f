//! `docs/flags.md`, the flag reference, rendered from the same clap
//! definitions (and the same [`super::Flag`] extraction) as `--man`, so the
//! documentation cannot drift from the parser: a test compares the file with
//! what [`markdown`] renders and says how to regenerate it.

use std::fmt::Write as _;

use super::{command, deprecated_flags, environment_text, flag_groups, Flag};

/// The command that rewrites `docs/flags.md` from the code.
pub const REGENERATE: &str = "GIT_SIDECAR_WRITE_DOCS=1 cargo test --lib flags_reference";

/// The whole of `docs/flags.md`.
pub fn markdown() -> String {
    let cmd = command();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Flag reference\n\n\
         <!-- Generated from the clap definitions in src/cli/defs.rs by src/manual/reference.rs; \
         do not edit by hand. Regenerate with: {REGENERATE} -->\n\n\
         Every flag, as `git-sidecar --help` and `--man` describe it. Each can also be set \
         through the environment variable shown with it; the deprecated names are git-sync \
         v3's. Precedence: the command line, then a deprecated name (with a warning), then \
         the `GITSYNC_*` name, then the default. Value syntax and the rules values are \
         checked against: [configuration.md](configuration.md). How the settings fit \
         together: the [README](../README.md) and the pages it links to.\n"
    );
    for (heading, flags) in flag_groups(&cmd) {
        let _ = writeln!(out, "## {heading}\n");
        out.push_str("| Flag | Environment | Default | Meaning |\n|---|---|---|---|\n");
        for flag in &flags {
            row(&mut out, flag);
        }
        out.push('\n');
    }
    out.push_str("## Environment\n\n```text\n");
    out.push_str(&environment_text(&cmd));
    out.push_str("\n```\n\n## Deprecated flags (git-sync v3)\n\n");
    out.push_str(
        "Accepted, each with a warning saying what to use instead.\n\n\
         | Flag | Environment | Instead |\n|---|---|---|\n",
    );
    for (long, legacy, advice) in deprecated_flags(&cmd) {
        let _ = writeln!(
            out,
            "| `{long}` | {} | {} |",
            env_names(legacy),
            escape(advice)
        );
    }
    out
}

/// One table row: spellings and value, environment names, the default the
/// help text states (`[default: …]`), and the rest of the help text.
fn row(out: &mut String, flag: &Flag) {
    let mut name = format!("`{}", flag.spellings.replace(", ", "`, `"));
    if let Some(value) = &flag.value {
        let _ = write!(name, " <{value}>");
    }
    name.push('`');
    let mut env = flag
        .env
        .as_deref()
        .map(|e| format!("`{e}`"))
        .unwrap_or_default();
    if !flag.legacy.is_empty() {
        let _ = write!(env, " (deprecated: {})", env_names(flag.legacy));
    }
    let (help, default) = split_default(&flag.help);
    let mut meaning = escape(&help);
    if flag.repeatable && !help.to_lowercase().contains("repeatable") {
        meaning.push_str(" Repeatable.");
    }
    let default = default.map(|d| escape(&d)).unwrap_or_default();
    let _ = writeln!(out, "| {name} | {env} | {default} | {meaning} |");
}

fn env_names(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

/// Splits a trailing `[default: …]` off a help text; the rest is one line,
/// ending with a full stop.
fn split_default(help: &str) -> (String, Option<String>) {
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let (text, default) = match flat.rfind("[default: ") {
        Some(at) if flat.ends_with(']') => (
            flat[..at].trim_end().to_string(),
            Some(flat[at + "[default: ".len()..flat.len() - 1].to_string()),
        ),
        _ => (flat, None),
    };
    let text = if text.is_empty() || text.ends_with('.') {
        text
    } else {
        format!("{text}.")
    };
    (text, default)
}

/// Help text as Markdown table content: `|` would end the cell, `<…>` would
/// be read as HTML, `*` as emphasis.
fn escape(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('*', "\\*")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// docs/flags.md is exactly what the code renders; with
    /// `GIT_SIDECAR_WRITE_DOCS=1` this test rewrites it instead.
    #[test]
    fn flags_reference_matches_the_code() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/flags.md");
        let want = markdown();
        if std::env::var_os("GIT_SIDECAR_WRITE_DOCS").is_some() {
            std::fs::write(&path, &want).expect("writing docs/flags.md");
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            let line = have
                .lines()
                .zip(want.lines())
                .position(|(h, w)| h != w)
                .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
            panic!(
                "docs/flags.md does not match the flags in src/cli/defs.rs (first difference at line \
                 {}: {:?} instead of {:?}). Regenerate it with:\n\n    {REGENERATE}\n",
                line + 1,
                have.lines().nth(line).unwrap_or("<end of file>"),
                want.lines().nth(line).unwrap_or("<end of file>"),
            );
        }
    }

    #[test]
    fn the_default_is_split_off_the_help_text() {
        assert_eq!(
            split_default("How long to wait\nbetween syncs [default: 10s]"),
            (
                "How long to wait between syncs.".to_string(),
                Some("10s".to_string())
            )
        );
        assert_eq!(
            split_default("No default here."),
            ("No default here.".to_string(), None)
        );
    }

    #[test]
    fn every_visible_flag_is_in_the_reference() {
        let text = markdown();
        for arg in command().get_arguments().filter(|a| !a.is_hide_set()) {
            let long = arg.get_long().expect("visible flags have a long name");
            assert!(text.contains(&format!("`--{long}")), "--{long} missing");
        }
        assert!(text.contains("`--branch`"), "deprecated flags missing");
        assert!(
            text.contains("GITSYNC_PASSWORD"),
            "environment-only settings missing"
        );
    }

    /// The README stays short, and every relative link in it and in docs/
    /// reaches an existing file and, with `#anchor`, one of its headings.
    #[test]
    fn readme_is_short_and_doc_links_resolve() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        let lines = readme.lines().count();
        assert!(
            lines <= 400,
            "README.md has {lines} lines; keep it to 400 and move detail to docs/"
        );
        let mut pages = vec![root.join("README.md")];
        for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
            let path = entry.expect("docs/ entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
        let mut broken = Vec::new();
        for page in &pages {
            let text = std::fs::read_to_string(page).expect("reading a page");
            for link in relative_links(&text) {
                let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
                let target = if file.is_empty() {
                    page.clone()
                } else {
                    page.parent().expect("a page's folder").join(file)
                };
                if !target.exists() {
                    broken.push(format!("{}: {link} (no such file)", page.display()));
                    continue;
                }
                if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                    let target_text = std::fs::read_to_string(&target).expect("reading a page");
                    if !headings(&target_text).iter().any(|h| slug(h) == anchor) {
                        broken.push(format!("{}: {link} (no such heading)", page.display()));
                    }
                }
            }
        }
        assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    }

    /// Targets of `[text](target)` that are not URLs.
    fn relative_links(text: &str) -> Vec<String> {
        text.split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
            .filter(|t| !t.contains("://") && !t.contains(' ') && !t.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Markdown headings outside code blocks.
    fn headings(text: &str) -> Vec<String> {
        let mut fenced = false;
        let mut out = Vec::new();
        for line in text.lines() {
            if line.starts_with("```") {
                fenced = !fenced;
            } else if !fenced && line.starts_with('#') {
                out.push(line.trim_start_matches('#').trim().to_string());
            }
        }
        out
    }

    /// A heading's anchor as GitHub makes it: lower case, punctuation but
    /// `-` and `_` dropped, spaces turned into `-`.
    fn slug(heading: &str) -> String {
        heading
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    }

    /// `docs/../README.md` as `README.md`.
    fn normalize(path: &Path) -> String {
        let mut parts: Vec<&str> = Vec::new();
        for part in path.iter().filter_map(|p| p.to_str()) {
            match part {
                ".." => {
                    parts.pop();
                }
                "." => {}
                _ => parts.push(part),
            }
        }
        parts.join("/")
    }

    #[test]
    fn anchors_are_made_as_github_makes_them() {
        assert_eq!(
            slug("Object-store upkeep (`--git-gc`)"),
            "object-store-upkeep---git-gc"
        );
        assert_eq!(
            slug("On-disk layout (same as git-sync v4)"),
            "on-disk-layout-same-as-git-sync-v4"
        );
        assert_eq!(normalize(Path::new("docs/../README.md")), "README.md");
    }
}
