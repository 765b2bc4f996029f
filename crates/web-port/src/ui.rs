//! The web UI: one page, its script, stylesheet and icon, and a few example
//! photos (from `testdata/`), compiled into the binary (`ui/` beside this
//! crate) so web-port serves them with nothing on disk and loads nothing
//! from the internet.

/// `GET /`
pub const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE_CSS: &str = include_str!("../ui/style.css");
const FAVICON_SVG: &str = include_str!("../ui/favicon.svg");

/// The example photos the page offers, by the name they are served under
/// (`/static/examples/NAME`).
const EXAMPLES: [(&str, &[u8], &str); 3] = [
    (
        "cat.jpg",
        include_bytes!("../../../testdata/cat.jpg"),
        "image/jpeg",
    ),
    (
        "coffee.jpg",
        include_bytes!("../../../testdata/coffee-1024x768.jpg"),
        "image/jpeg",
    ),
    (
        "rocket.webp",
        include_bytes!("../../../testdata/rocket.webp"),
        "image/webp",
    ),
];

/// An embedded file under `/static/` and its media type. Any other name,
/// including every `..` or encoded path, is simply not found.
pub fn asset(name: &str) -> Option<(&'static [u8], &'static str)> {
    match name {
        "app.js" => Some((APP_JS.as_bytes(), "text/javascript; charset=utf-8")),
        "style.css" => Some((STYLE_CSS.as_bytes(), "text/css; charset=utf-8")),
        "favicon.svg" => Some((FAVICON_SVG.as_bytes(), "image/svg+xml")),
        _ => {
            let example = name.strip_prefix("examples/")?;
            EXAMPLES
                .iter()
                .find(|(file, _, _)| *file == example)
                .map(|(_, bytes, media_type)| (*bytes, *media_type))
        }
    }
}
