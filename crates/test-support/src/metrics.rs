//! Reading a Prometheus text exposition (`GET /metrics`) in tests: one
//! sample per line, looked up by name and labels.

use std::collections::BTreeMap;

/// The samples of one scrape.
pub struct Scrape {
    /// Each sample: its name, its labels, its value.
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Fetches `url` (it must answer 200 in Prometheus's text format).
    pub async fn fetch(url: &str) -> Scrape {
        let response = reqwest::get(url).await.expect("the metrics answer");
        assert_eq!(response.status(), 200, "GET {url}");
        let content_type = crate::sidecar::content_type(&response);
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "Prometheus's text format: {content_type}"
        );
        Scrape::parse(&response.text().await.expect("a text body"))
    }

    /// [`Scrape::fetch`] of an owned URL (a future that borrows nothing).
    pub async fn fetch_owned(url: String) -> Scrape {
        Scrape::fetch(&url).await
    }

    /// Parses a text exposition; panics on a line it cannot read.
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| parse_line(line).unwrap_or_else(|| panic!("unreadable sample: {line}")))
            .collect();
        Scrape { samples }
    }

    /// The value of the sample `name` with exactly `labels`, if there is one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, value)| *value)
    }

    /// The sum of the samples `name` whose labels include `labels` (0 when
    /// there are none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|have| have == v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }
}

/// `name{a="x",b="y"} value` (or `name value`).
fn parse_line(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_string(), BTreeMap::new(), value));
    };
    let mut labels = BTreeMap::new();
    let mut rest = rest.strip_suffix('}')?;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut label = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => label.push('\n'),
                    other => label.push(other),
                },
                (_, c) => label.push(c),
            }
        };
        labels.insert(key.to_string(), label);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some((name.to_string(), labels, value))
}
