//! A minimal PDF writer: A4 pages of Helvetica text lines and filled rectangles, enough for a
//! certificate or a statement. Written by hand (objects, cross-reference table, trailer) because a document
//! this simple does not need a PDF library.
//!
//! Text is encoded in WinAnsiEncoding (the standard 14 fonts' Latin encoding, which has £ and
//! the dashes); a character outside it prints as `?`. Bytes outside printable ASCII are written
//! as octal escapes and the content stream is not compressed, so the file stays plain text and
//! its words can be searched.

/// A4 width, in points.
pub const PAGE_WIDTH: f32 = 595.0;
/// A4 height, in points.
pub const PAGE_HEIGHT: f32 = 842.0;

/// Which of the two fonts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Font {
    /// Helvetica.
    Regular,
    /// Helvetica-Bold.
    Bold,
}

/// The drawing operations of one page.
#[derive(Debug, Clone, Default)]
pub struct Page {
    ops: Vec<u8>,
}

/// The WinAnsiEncoding byte of a character, if it has one.
fn win_ansi(c: char) -> Option<u8> {
    let code = u32::from(c);
    match c {
        ' '..='~' => u8::try_from(code).ok(),
        '€' => Some(0x80),
        '‚' => Some(0x82),
        '„' => Some(0x84),
        '…' => Some(0x85),
        '‘' => Some(0x91),
        '’' => Some(0x92),
        '“' => Some(0x93),
        '”' => Some(0x94),
        '•' => Some(0x95),
        '–' => Some(0x96),
        '—' => Some(0x97),
        '™' => Some(0x99),
        // Latin-1 Supplement: the same bytes in WinAnsiEncoding.
        '\u{a0}'..='\u{ff}' => u8::try_from(code).ok(),
        _ => None,
    }
}

/// `text` as a PDF literal string, parentheses included.
pub fn pdf_string(text: &str) -> Vec<u8> {
    let mut out = vec![b'('];
    for c in text.chars() {
        let b = win_ansi(c).unwrap_or(b'?');
        match b {
            b'(' | b')' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\{b:03o}").as_bytes()),
        }
    }
    out.push(b')');
    out
}

fn num(v: f32) -> String {
    // Two decimals are finer than any printer; trailing zeros are trimmed.
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" || s == "-0" {
        "0".into()
    } else {
        s.to_owned()
    }
}

impl Page {
    /// A blank page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one line of text with its baseline starting at (`x`, `y`), in points from the
    /// bottom-left corner.
    pub fn text(&mut self, x: f32, y: f32, size: f32, font: Font, text: &str) {
        let name = match font {
            Font::Regular => "F1",
            Font::Bold => "F2",
        };
        self.ops.extend_from_slice(
            format!("BT /{name} {} Tf {} {} Td ", num(size), num(x), num(y)).as_bytes(),
        );
        self.ops.extend_from_slice(&pdf_string(text));
        self.ops.extend_from_slice(b" Tj ET\n");
    }

    /// Sets the fill colour to a grey level from 0 (black) to 1 (white).
    pub fn gray(&mut self, level: f32) {
        self.ops
            .extend_from_slice(format!("{} g\n", num(level.clamp(0.0, 1.0))).as_bytes());
    }

    /// Fills a rectangle whose bottom-left corner is (`x`, `y`).
    pub fn fill_rect(&mut self, x: f32, y: f32, w: f32, h: f32) {
        self.ops.extend_from_slice(
            format!("{} {} {} {} re f\n", num(x), num(y), num(w), num(h)).as_bytes(),
        );
    }

    /// The page as a single-page PDF document titled `title`.
    pub fn into_document(self, title: &str) -> Vec<u8> {
        document(vec![self], title)
    }
}

/// `pages` as one PDF document titled `title` (an empty list gives one blank page).
pub fn document(pages: Vec<Page>, title: &str) -> Vec<u8> {
    let mut pages = pages;
    if pages.is_empty() {
        pages.push(Page::new());
    }
    let n = pages.len();
    // Objects: 1 catalog, 2 page tree, 3 and 4 the fonts, 5 the info dictionary, then a page
    // object and its content stream for each page.
    let page_obj = |i: usize| 6 + 2 * i;
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", page_obj(i))).collect();
    let mut objects: Vec<Vec<u8>> = Vec::with_capacity(5 + 2 * n);
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    objects.push(format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")).into_bytes());
    for base in ["Helvetica", "Helvetica-Bold"] {
        objects.push(
            format!(
                "<< /Type /Font /Subtype /Type1 /BaseFont /{base} /Encoding /WinAnsiEncoding >>"
            )
            .into_bytes(),
        );
    }
    let mut info = b"<< /Title ".to_vec();
    info.extend_from_slice(&pdf_string(title));
    info.extend_from_slice(b" /Producer (ShiftCover) >>");
    objects.push(info);
    for (i, page) in pages.into_iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] \
                 /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
                num(PAGE_WIDTH),
                num(PAGE_HEIGHT),
                page_obj(i) + 1
            )
            .into_bytes(),
        );
        let mut content = page.ops;
        if content.last() == Some(&b'\n') {
            content.pop();
        }
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend_from_slice(&content);
        stream.extend_from_slice(b"\nendstream");
        objects.push(stream);
    }

    // A binary comment after the header tells transfer tools the file is not plain text.
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref_at = out.len();
    let size = objects.len() + 1;
    out.extend_from_slice(format!("xref\n0 {size}\n0000000000 65535 f \n").as_bytes());
    for offset in offsets {
        // Each entry is exactly 20 bytes: 10 digits, space, 5 digits, space, 'n', space, LF.
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {size} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref_at}\n%%EOF\n"
        )
        .as_bytes(),
    );
    out
}

/// Splits `text` into lines of at most `max_chars` characters, at spaces where it can and inside
/// words (a long link) where it must.
pub fn wrap(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        let line_len = line.chars().count();
        if line_len > 0 && line_len + 1 + word.len() <= max_chars {
            line.push(' ');
            line.extend(word.iter());
            continue;
        }
        if line_len > 0 {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > max_chars {
            let rest = word.split_off(max_chars);
            lines.push(word.into_iter().collect());
            word = rest;
        }
        line = word.into_iter().collect();
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_and_encoded() {
        assert_eq!(pdf_string("a(b)\\c"), b"(a\\(b\\)\\\\c)".to_vec());
        assert_eq!(pdf_string("£5 — ok"), b"(\\2435 \\227 ok)".to_vec());
        assert_eq!(pdf_string("日"), b"(?)".to_vec());
        assert_eq!(num(12.0), "12");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(-0.001), "0");
    }

    #[test]
    fn wrapping_prefers_spaces_and_breaks_long_words() {
        assert_eq!(wrap("one two three", 7), vec!["one two", "three"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), Vec::<String>::new());
    }

    #[test]
    fn the_cross_reference_table_points_at_every_object() {
        let mut page = Page::new();
        page.text(50.0, 800.0, 12.0, Font::Bold, "Hello (world)");
        page.fill_rect(10.0, 10.0, 5.0, 5.0);
        let pdf = page.into_document("Test");
        // Everything after the binary comment of the header is ASCII.
        let text = std::str::from_utf8(&pdf[15..]).unwrap();
        let xref_at: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(pdf[xref_at..].starts_with(b"xref\n0 8\n"));
        let entries = std::str::from_utf8(&pdf[xref_at..]).unwrap();
        for (i, line) in entries.lines().skip(3).take(7).enumerate() {
            let offset: usize = line[..10].parse().unwrap();
            assert!(
                pdf[offset..].starts_with(format!("{} 0 obj", i + 1).as_bytes()),
                "object {}",
                i + 1
            );
        }
        assert!(text.contains("(Hello \\(world\\)) Tj"));
    }

    #[test]
    fn a_document_of_many_pages_lists_each_page_and_points_at_every_object() {
        let pages: Vec<Page> = (1..=3)
            .map(|n| {
                let mut p = Page::new();
                p.text(50.0, 800.0, 12.0, Font::Regular, &format!("page {n}"));
                p
            })
            .collect();
        let pdf = document(pages, "Three");
        let text = std::str::from_utf8(&pdf[15..]).unwrap();
        assert!(text.contains("/Kids [6 0 R 8 0 R 10 0 R] /Count 3"));
        let xref_at: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(pdf[xref_at..].starts_with(b"xref\n0 12\n"));
        let entries = std::str::from_utf8(&pdf[xref_at..]).unwrap();
        for (i, line) in entries.lines().skip(3).take(11).enumerate() {
            let offset: usize = line[..10].parse().unwrap();
            assert!(pdf[offset..].starts_with(format!("{} 0 obj", i + 1).as_bytes()));
        }
        for n in 1..=3 {
            assert!(text.contains(&format!("(page {n}) Tj")));
        }
        // Page 2's content stream is the object after its page object.
        assert!(text.contains("/Contents 9 0 R"));
    }
}
