//! TEMPORARY STUB (being replaced by the real clap layer).
