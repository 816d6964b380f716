//! Text from the network made fit for a client or a log: short, and free of control
//! characters.

/// The most bytes of a peer's or an origin's text that [`sanitize_message`] keeps: 256.
pub const MAX_MESSAGE_LEN: usize = 256;

/// What [`sanitize_message`] appends to a message it cut.
const CUT_MARK: &str = "...";

/// `text` (an error body or status message a peer or an origin sent) made safe to hand to
/// a client or write to a log: control characters (C0, DEL, C1: terminal escapes among
/// them) and Unicode bidirectional overrides dropped, tabs and line breaks turned into
/// spaces, trailing whitespace trimmed, and cut on a character boundary to at most
/// [`MAX_MESSAGE_LEN`] bytes, followed by `...` when something was cut.
pub fn sanitize_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_LEN));
    let mut chars = text.trim_end().chars().filter_map(clean_char).peekable();
    while let Some(c) = chars.next_if(|c| fits(&out, *c)) {
        out.push(c);
    }
    if chars.peek().is_some() {
        out.truncate(out.trim_end().len());
        out.push_str(CUT_MARK);
    }
    out
}

/// What `c` becomes in a sanitized message: a space for a tab or a line break, nothing for
/// another control character or a bidirectional override, else itself.
fn clean_char(c: char) -> Option<char> {
    match c {
        '\t' | '\n' | '\r' => Some(' '),
        c if c.is_control() || is_bidi_control(c) => None,
        c => Some(c),
    }
}

/// The Unicode characters that reorder how text displays (they can make a log line read
/// other than it is).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` still fits in `out` within [`MAX_MESSAGE_LEN`].
fn fits(out: &str, c: char) -> bool {
    out.len().saturating_add(c.len_utf8()) <= MAX_MESSAGE_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clean_text_is_unchanged() {
        assert_eq!(sanitize_message("disk full: /var"), "disk full: /var");
        assert_eq!(sanitize_message("é ü 日本"), "é ü 日本");
        assert_eq!(sanitize_message(""), "");
    }

    #[test]
    fn control_characters_go() {
        assert_eq!(sanitize_message("a\x1b[31mred\x1b[0m\x07"), "a[31mred[0m");
        assert_eq!(sanitize_message("line\r\nnext\tcol\n"), "line  next col");
        assert_eq!(sanitize_message("\u{9b}2J\u{7f}x\0"), "2Jx");
        assert_eq!(sanitize_message("abc\u{202e}fed"), "abcfed");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_LEN);
        let cut = sanitize_message(&long);
        assert!(
            cut.len() <= MAX_MESSAGE_LEN + CUT_MARK.len(),
            "{}",
            cut.len()
        );
        assert_eq!(
            cut,
            format!("{}{CUT_MARK}", "é".repeat(MAX_MESSAGE_LEN / 2))
        );
        let exact = "x".repeat(MAX_MESSAGE_LEN);
        assert_eq!(sanitize_message(&exact), exact, "nothing cut, no mark");
        let escapes = "\x1b[2J".repeat(64 * 1024 / 4);
        let cut = sanitize_message(&escapes);
        assert!(cut.len() <= MAX_MESSAGE_LEN + CUT_MARK.len());
        assert!(!cut.chars().any(char::is_control), "{cut:?}");
    }
}
