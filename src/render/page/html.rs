//! The escaping HTML writer the settings page is built with.
//!
//! Markup can only be `&'static str` from the source; every value (request
//! data, config text, translations) goes through [`escape_into`]. No I/O.

/// An HTML writer that cannot emit an unescaped value: markup is `&'static
/// str`, everything else goes through [`escape_into`].
#[derive(Default)]
pub struct Html {
    out: String,
}

impl Html {
    /// Literal markup from the source code; never request or config data.
    pub fn markup(&mut self, markup: &'static str) {
        self.out.push_str(markup);
    }

    pub fn text(&mut self, text: &str) {
        escape_into(&mut self.out, text);
    }

    /// `template` with its one `{}` replaced by `value`; both escaped.
    pub fn template(&mut self, template: &str, value: &str) {
        let (before, after) = template.split_once("{}").unwrap_or((template, ""));
        self.text(before);
        self.text(value);
        self.text(after);
    }

    /// `<tag name="value" ...>`; names are static, values escaped. An empty
    /// value is written as a bare boolean attribute.
    pub fn start(&mut self, tag: &'static str, attrs: &[(&'static str, &str)]) {
        self.out.push('<');
        self.out.push_str(tag);
        for (name, value) in attrs {
            self.out.push(' ');
            self.out.push_str(name);
            if !value.is_empty() {
                self.out.push_str("=\"");
                escape_into(&mut self.out, value);
                self.out.push('"');
            }
        }
        self.out.push('>');
    }

    pub fn end(&mut self, tag: &'static str) {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    pub fn element(&mut self, tag: &'static str, attrs: &[(&'static str, &str)], text: &str) {
        self.start(tag, attrs);
        self.text(text);
        self.end(tag);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Escapes for both text and double- or single-quoted attribute values.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_the_five_characters() {
        let mut out = String::new();
        escape_into(&mut out, r#"<a href="x" onclick='y'>&amp;</a> ü"#);
        assert_eq!(
            out,
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt; ü"
        );
    }

    #[test]
    fn writer_escapes_text_attributes_and_template_values() {
        let mut w = Html::default();
        w.start("a", &[("href", "/?q=\"><script>"), ("download", "")]);
        w.template("a {} b & c", "<b>");
        w.end("a");
        assert_eq!(
            w.finish(),
            "<a href=\"/?q=&quot;&gt;&lt;script&gt;\" download>a &lt;b&gt; b &amp; c</a>"
        );
    }
}
