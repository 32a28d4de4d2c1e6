//! Text for people: a value quoted in a message cut short. Here once, so that every message
//! cuts alike.

/// `text` cut after `max_chars` characters, `...` marking the cut.
pub(crate) fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
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
}
