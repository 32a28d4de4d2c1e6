//! Text for people: a value quoted in a message cut short, an error and its causes on one line.
//! Here once, so that every message cuts and chains alike.

use std::error::Error;

/// `text` cut after `max_chars` characters, `...` marking the cut.
pub(crate) fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// `error` and each of its sources, `: ` between them, on one line. Unlike the SDK's
/// `DisplayErrorContext`, no `Debug` rendering follows: that is a dump for developers (the SDK's
/// runs to kilobytes of request internals), not words for people.
pub(crate) fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    one_line(&text)
}

/// `text` on one line: runs of whitespace (line breaks included) and control characters become
/// one space, so that an error or a subject never spans log lines.
pub(crate) fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_counts_characters_and_marks_the_cut() {
        assert_eq!(clip("short", 5), "short");
        assert_eq!(clip("longer", 5), "longe...");
        assert_eq!(clip("\u{e9}t\u{e9} \u{1f512}", 4), "\u{e9}t\u{e9} ...");
        assert_eq!(clip("", 0), "");
        assert_eq!(clip("x", 0), "...");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner\n  on two lines")]
    struct Inner;

    #[test]
    fn an_error_chain_is_one_line_without_debug() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner on two lines");
    }
}
