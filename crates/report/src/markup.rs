//! Escaping and number formatting shared by the Markdown and JUnit XML renderers.

/// Text made safe for one Markdown table cell: no line breaks, pipes escaped,
/// HTML-significant characters escaped (a target-provided URL or request name
/// must not inject markup into a CI job summary).
pub fn md_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' | '\n' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Text made safe for XML character data and attribute values: the five
/// special characters escaped, and characters XML 1.0 forbids (most control
/// characters, lone surrogates cannot occur in `str`, U+FFFE/U+FFFF) dropped.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// A signed percentage with one decimal: `+12.3%`.
pub fn pct_signed(x: f64) -> String {
    format!("{x:+.1}%")
}

/// A signed difference in percentage points: `+0.12 pp`.
pub fn pp_signed(x: f64) -> String {
    format!("{x:+.2} pp")
}

/// A p-value: `<0.001` or three decimals.
pub fn pvalue(p: f64) -> String {
    if p < 0.001 {
        "<0.001".to_string()
    } else {
        format!("{p:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escaping_removes_what_xml_forbids() {
        assert_eq!(
            xml_escape("a<b & \"c\" 'd'>\u{1}\u{7}e"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;e"
        );
        assert_eq!(xml_escape("line\nbreak"), "line\nbreak");
    }

    #[test]
    fn markdown_cells_stay_one_cell() {
        assert_eq!(md_cell("a|b\nc<script>"), "a\\|b c&lt;script&gt;");
    }

    #[test]
    fn numbers() {
        assert_eq!(pct_signed(12.345), "+12.3%");
        assert_eq!(pct_signed(-0.04), "-0.0%");
        assert_eq!(pp_signed(0.1), "+0.10 pp");
        assert_eq!(pvalue(0.0001), "<0.001");
        assert_eq!(pvalue(0.0345), "0.035");
    }
}
