//! The fonts plots are drawn with: DejaVu Sans compiled into the binary and registered with
//! plotters' ab_glyph renderer, so text never depends on fonts or fontconfig on the machine.

use plotters::style::{register_font, FontStyle};
use std::sync::Once;

/// Family name every plot uses.
pub const FAMILY: &str = "sans-serif";

static REGISTER: Once = Once::new();

/// Registers the embedded fonts (idempotent; call before drawing).
pub fn ensure() {
    REGISTER.call_once(|| {
        let fonts: [(FontStyle, &'static [u8]); 2] = [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
        ];
        for (style, bytes) in fonts {
            // The bytes are a valid TrueType font compiled in; failure would be a build defect.
            let ok = register_font(FAMILY, style, bytes).is_ok();
            assert!(ok, "embedded DejaVu Sans font is valid");
        }
    });
}
