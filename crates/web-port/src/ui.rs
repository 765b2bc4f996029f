//! The web UI: one page, one script, one stylesheet, compiled into the
//! binary (`ui/` beside this crate) so web-port serves them with nothing on
//! disk and loads nothing from the internet.

/// `GET /`
pub const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE_CSS: &str = include_str!("../ui/style.css");

/// An embedded file under `/static/` and its media type. Any other name,
/// including every `..` or encoded path, is simply not found.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "app.js" => Some((APP_JS, "text/javascript; charset=utf-8")),
        "style.css" => Some((STYLE_CSS, "text/css; charset=utf-8")),
        _ => None,
    }
}
