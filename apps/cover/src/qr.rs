//! QR codes of verify links, as a module matrix the HTML and PDF renderers draw themselves.

use qrcode::{Color, EcLevel, QrCode};

/// The light border around a code, in modules, that scanners need.
pub const QUIET_ZONE: usize = 4;

/// A QR code as a square of modules, row by row, `true` for dark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrMatrix {
    width: usize,
    dark: Vec<bool>,
}

impl QrMatrix {
    /// Encodes `data` with medium error correction (a phone camera copes with a creased printout).
    pub fn encode(data: &str) -> anyhow::Result<Self> {
        let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
            .map_err(|e| anyhow::anyhow!("QR code: {e:?}"))?;
        let width = code.width();
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        Ok(Self { width, dark })
    }

    /// Modules per side, without the quiet zone.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether the module at column `x`, row `y` is dark.
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.width && self.dark[y * self.width + x]
    }

    /// Dark runs per row: `(row, first column, length)`, so renderers draw few, wide rectangles.
    pub fn dark_runs(&self) -> Vec<(usize, usize, usize)> {
        let mut runs = Vec::new();
        for y in 0..self.width {
            let mut x = 0;
            while x < self.width {
                if self.is_dark(x, y) {
                    let start = x;
                    while x < self.width && self.is_dark(x, y) {
                        x += 1;
                    }
                    runs.push((y, start, x - start));
                } else {
                    x += 1;
                }
            }
        }
        runs
    }

    /// The code as an inline SVG element, `size` CSS pixels square, quiet zone included.
    pub fn to_svg(&self, size: u32, label: &str) -> String {
        let side = self.width + 2 * QUIET_ZONE;
        let mut path = String::new();
        for (y, x, len) in self.dark_runs() {
            path.push_str(&format!(
                "M{} {}h{len}v1h-{len}z",
                x + QUIET_ZONE,
                y + QUIET_ZONE
            ));
        }
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" width=\"{size}\" \
             height=\"{size}\" shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"{label}\">\
             <rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/>\
             <path fill=\"#000\" d=\"{path}\"/></svg>",
            label = crate::certificate::escape_html(label),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_verify_link_encodes_with_finder_patterns() {
        let url = format!("https://shiftcover.example/verify/{}", "x".repeat(170));
        let qr = QrMatrix::encode(&url).unwrap();
        assert!(qr.width() >= 21 && (qr.width() - 17).is_multiple_of(4));
        // The top-left finder pattern: a dark 7×7 ring around a light ring and a dark 3×3 core.
        for i in 0..7 {
            assert!(qr.is_dark(i, 0) && qr.is_dark(0, i) && qr.is_dark(i, 6) && qr.is_dark(6, i));
        }
        assert!(!qr.is_dark(1, 1) && qr.is_dark(3, 3));
        let cells: usize = qr.dark_runs().iter().map(|r| r.2).sum();
        let dark = (0..qr.width())
            .flat_map(|y| (0..qr.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| qr.is_dark(x, y))
            .count();
        assert_eq!(cells, dark);
        let svg = qr.to_svg(160, "QR \"code\"");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("aria-label=\"QR &quot;code&quot;\""));
    }
}
