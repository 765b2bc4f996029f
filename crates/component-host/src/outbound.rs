//! Where a component's outgoing HTTP requests may go.
//!
//! A component reaches Dapr through its sidecar's HTTP API, so by default
//! the only destination is that sidecar: `127.0.0.1` or `localhost` at
//! `DAPR_HTTP_PORT`. Every other request fails in the guest with wasi:http's
//! `HTTP-request-denied` error code (and a warning here naming the
//! destination and the flag that would open it). `--allow-outbound
//! HOST:PORT` adds destinations one by one.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::uri::Scheme;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// One allowed destination: a host name or address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    host: String,
    port: u16,
}

impl Destination {
    /// `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Destination {
        Destination {
            host: host.into().to_ascii_lowercase(),
            port,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl FromStr for Destination {
    type Err = String;

    /// Parses `HOST:PORT` (`[::1]:PORT` for IPv6).
    fn from_str(s: &str) -> Result<Destination, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` is not HOST:PORT"))?;
        let port = port
            .parse()
            .map_err(|_| format!("`{s}`: `{port}` is not a port number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{s}` names no host"));
        }
        Ok(Destination::new(host, port))
    }
}

/// The destinations a component may send requests to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbound {
    allowed: Vec<Destination>,
}

impl Outbound {
    /// Only the sidecar on `dapr_http_port` (if any), plus `extra`.
    pub fn sidecar_and(dapr_http_port: Option<u16>, extra: Vec<Destination>) -> Outbound {
        let mut allowed = Vec::new();
        if let Some(port) = dapr_http_port {
            allowed.push(Destination::new("127.0.0.1", port));
            allowed.push(Destination::new("localhost", port));
        }
        allowed.extend(extra);
        Outbound { allowed }
    }

    /// The allowed destinations.
    pub fn allowed(&self) -> &[Destination] {
        &self.allowed
    }

    /// Whether a request to `uri` may be sent.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(authority) = uri.authority() else {
            return false;
        };
        let port = authority.port_u16().unwrap_or(match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTPS => 443,
            _ => 80,
        });
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        self.allowed
            .iter()
            .any(|d| d.port == port && d.host.eq_ignore_ascii_case(host))
    }
}

/// The wasi:http hooks of one request's store: outgoing requests pass
/// [`Outbound`] first.
pub(crate) struct OutboundHooks {
    pub(crate) outbound: Arc<Outbound>,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        _ = fut;
        if !self.outbound.allows(request.uri()) {
            tracing::warn!(
                uri = %request.uri(),
                "a component's outgoing request was denied: components may call only their \
                 Dapr sidecar (DAPR_HTTP_PORT) and destinations given with --allow-outbound HOST:PORT"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> http::Uri {
        s.parse().expect("a test URI")
    }

    #[test]
    fn only_the_sidecar_is_allowed_by_default() {
        let outbound = Outbound::sidecar_and(Some(3500), Vec::new());
        assert!(outbound.allows(&uri("http://127.0.0.1:3500/v1.0/state/s")));
        assert!(outbound.allows(&uri("http://LOCALHOST:3500/v1.0/state/s")));
        assert!(!outbound.allows(&uri("http://127.0.0.1:3501/")));
        assert!(!outbound.allows(&uri("http://example.com/")));
        assert!(!outbound.allows(&uri("/relative")));
        assert!(!Outbound::sidecar_and(None, Vec::new()).allows(&uri("http://127.0.0.1:3500/")));
    }

    #[test]
    fn allowed_destinations_are_parsed_and_matched_with_default_ports() {
        let extra = vec![
            "example.com:443".parse().expect("valid"),
            "[::1]:8080".parse().expect("valid"),
        ];
        let outbound = Outbound::sidecar_and(None, extra);
        assert!(outbound.allows(&uri("https://example.com/x")));
        assert!(!outbound.allows(&uri("http://example.com/x")));
        assert!(outbound.allows(&uri("http://[::1]:8080/")));
        assert!("example.com".parse::<Destination>().is_err());
        assert!(":80".parse::<Destination>().is_err());
        assert!("host:http".parse::<Destination>().is_err());
    }
}
