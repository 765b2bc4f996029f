//! Service invocation of non-Dapr endpoints, as daprd does it: an HTTP
//! service that has no sidecar is invoked like an app, by name or by URL.
//!
//! - **By name**: an `HTTPEndpoint` resource in a `--resources-path`
//!   folder names a base URL and headers for every call:
//!
//!   ```yaml
//!   apiVersion: dapr.io/v1alpha1
//!   kind: HTTPEndpoint
//!   metadata:
//!     name: weather
//!   spec:
//!     baseUrl: https://api.example.com/v2
//!     headers:
//!     - name: Accept-Language
//!       value: en-US
//!     - name: Authorization
//!       secretKeyRef: {name: weather-token, key: weather-token}
//!     clientTLS:                  # optional: PEM, as a value or a secretKeyRef
//!       rootCA: {value: "-----BEGIN CERTIFICATE-----..."}
//!       certificate: {secretKeyRef: {name: client-cert}}
//!       privateKey: {secretKeyRef: {name: client-key}}
//!   auth:
//!     secretStore: localsecrets  # where the secretKeyRefs are read
//!   scopes: [web-port]          # optional: only these app ids load it
//!   ```
//!
//!   `/v1.0/invoke/weather/method/forecast?city=x` then calls
//!   `https://api.example.com/v2/forecast?city=x`, with the spec's headers
//!   set over the caller's.
//! - **By URL**: an app id that starts with `http://` or `https://` is the
//!   base URL itself: `/v1.0/invoke/http%3A%2F%2Flocalhost%3A8000/method/x`
//!   (or unencoded, `/v1.0/invoke/http://localhost:8000/method/x`), the
//!   `dapr-app-id` header, or gRPC `InvokeService`'s `id`.
//!
//! The call goes from this sidecar straight to the endpoint (there is no
//! sidecar on the other side), over HTTP/1.1, with `https://` checked
//! against the system's trusted roots (`SSL_CERT_FILE` / `SSL_CERT_DIR`
//! override them) or the endpoint's own `rootCA`. It carries what a call
//! to an app carries but this app's tokens and ids: the caller's headers
//! (not hop-by-hop ones, not `dapr-api-token`), the trace context, and the
//! endpoint's headers; not `APP_API_TOKEN`, and no `dapr-caller-app-id`,
//! as daprd sends none of them to an endpoint. The answer comes back as an
//! app's does. As with daprd, anything that may call this sidecar may make
//! it call any URL; the sidecar listens on loopback only, and
//! `DAPR_API_TOKEN` guards it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::components::{self, ComponentError, ComponentMetadata};
use crate::secrets::SecretStore;

/// How long connecting to an endpoint may take (as to an app).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `kind` of the resource documents this module reads.
pub const HTTP_ENDPOINT_KIND: &str = "HTTPEndpoint";

/// The client of an endpoint: HTTP/1.1, `http://` or `https://`.
pub(crate) type EndpointClient = Client<HttpsConnector<HttpConnector>, Body>;

/// One `HTTPEndpoint` resource, ready to call.
struct HttpEndpoint {
    base_url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Its own client when it has `clientTLS`; else the shared one.
    client: Option<EndpointClient>,
}

/// Where an invocation of a non-Dapr endpoint goes ([`HttpEndpoints::target`]).
pub(crate) struct ExternalTarget<'a> {
    /// The base URL the method path is appended to.
    pub base_url: &'a str,
    /// Headers set on every call (the resource's).
    pub headers: &'a [(HeaderName, HeaderValue)],
    client: Option<&'a EndpointClient>,
}

/// The `HTTPEndpoint` resources of a sidecar, and the client of URL app ids.
pub struct HttpEndpoints {
    named: HashMap<String, HttpEndpoint>,
    /// The client with the system's roots, made on first use (loading the
    /// roots reads files and takes memory a sidecar that calls no endpoint
    /// does not need).
    shared_client: tokio::sync::OnceCell<Result<EndpointClient, String>>,
}

/// The resource as written.
#[derive(Deserialize)]
struct EndpointDocument {
    metadata: ComponentMetadata,
    spec: EndpointSpec,
    #[serde(default)]
    auth: EndpointAuth,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointSpec {
    base_url: String,
    #[serde(default)]
    headers: Vec<HeaderItem>,
    #[serde(default, rename = "clientTLS")]
    client_tls: Option<ClientTls>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointAuth {
    #[serde(default)]
    secret_store: String,
}

/// A header, or a TLS document: a value, or a secret's.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeaderItem {
    name: String,
    #[serde(flatten)]
    source: ValueSource,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValueSource {
    #[serde(default)]
    value: Option<serde_yaml::Value>,
    #[serde(default)]
    secret_key_ref: Option<SecretKeyRef>,
}

#[derive(Deserialize)]
struct SecretKeyRef {
    name: String,
    /// The key within the secret; empty means the secret's name, as daprd.
    #[serde(default)]
    key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientTls {
    #[serde(default, rename = "rootCA")]
    root_ca: Option<ValueSource>,
    #[serde(default)]
    certificate: Option<ValueSource>,
    #[serde(default)]
    private_key: Option<ValueSource>,
    #[serde(default)]
    renegotiation: Option<String>,
}

/// Whether `app_id` is a URL to invoke directly, as daprd takes one.
pub(crate) fn is_url_app_id(app_id: &str) -> bool {
    app_id.starts_with("http://") || app_id.starts_with("https://")
}

impl HttpEndpoints {
    /// No resources: only URL app ids.
    pub fn none() -> HttpEndpoints {
        HttpEndpoints {
            named: HashMap::new(),
            shared_client: tokio::sync::OnceCell::new(),
        }
    }

    /// Reads the `HTTPEndpoint` documents of `folders` in scope for
    /// `app_id`, their secrets from `secret_stores`. A document that is
    /// not valid, a secret that is not there, a header or certificate that
    /// cannot be used, or two endpoints of one name, is an error naming
    /// the file.
    pub fn load(
        folders: &[PathBuf],
        app_id: &str,
        secret_stores: &HashMap<String, SecretStore>,
    ) -> Result<HttpEndpoints, ComponentError> {
        let mut endpoints = HttpEndpoints::none();
        for (path, document) in components::documents_of_kind(folders, HTTP_ENDPOINT_KIND)? {
            let invalid = |reason: String| ComponentError::Invalid {
                path: path.clone(),
                reason,
            };
            let document: EndpointDocument =
                serde_yaml::from_value(document).map_err(|e| invalid(e.to_string()))?;
            if !document.scopes.is_empty() && !document.scopes.iter().any(|s| s == app_id) {
                continue;
            }
            let name = document.metadata.name.clone();
            let endpoint = HttpEndpoint::from_document(document, secret_stores)
                .map_err(|reason| invalid(format!("HTTPEndpoint `{name}`: {reason}")))?;
            if endpoints.named.insert(name.clone(), endpoint).is_some() {
                return Err(invalid(format!("a second HTTPEndpoint named `{name}`")));
            }
            tracing::info!(endpoint = %name, "HTTP endpoint loaded");
        }
        Ok(endpoints)
    }

    /// The endpoints' names, sorted (for the metadata API).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.named.keys().cloned().collect();
        names.sort();
        names
    }

    /// Where an invocation of `app_id` goes when it is not an app: the
    /// endpoint of that name, or the URL it is.
    pub(crate) fn target<'a>(&'a self, app_id: &'a str) -> Option<ExternalTarget<'a>> {
        if let Some(endpoint) = self.named.get(app_id) {
            return Some(ExternalTarget {
                base_url: &endpoint.base_url,
                headers: &endpoint.headers,
                client: endpoint.client.as_ref(),
            });
        }
        is_url_app_id(app_id).then_some(ExternalTarget {
            base_url: app_id,
            headers: &[],
            client: None,
        })
    }

    /// The client that calls `target`.
    pub(crate) async fn client_for<'a>(
        &'a self,
        target: &ExternalTarget<'a>,
    ) -> Result<&'a EndpointClient, String> {
        if let Some(client) = target.client {
            return Ok(client);
        }
        let shared = self
            .shared_client
            .get_or_init(|| async {
                tokio::task::spawn_blocking(client_with_system_roots)
                    .await
                    .unwrap_or_else(|e| Err(format!("loading the trusted roots failed: {e}")))
            })
            .await;
        shared.as_ref().map_err(Clone::clone)
    }
}

impl HttpEndpoint {
    fn from_document(
        document: EndpointDocument,
        secret_stores: &HashMap<String, SecretStore>,
    ) -> Result<HttpEndpoint, String> {
        let base_url = document.spec.base_url;
        if !is_url_app_id(&base_url) {
            return Err(format!(
                "baseUrl `{base_url}` is not an http:// or https:// URL"
            ));
        }
        base_url
            .parse::<axum::http::Uri>()
            .map_err(|e| format!("baseUrl `{base_url}`: {e}"))?;
        let store = document.auth.secret_store.as_str();
        let resolve =
            |what: &str, source: &ValueSource| resolve(what, source, store, secret_stores);
        let mut headers = Vec::with_capacity(document.spec.headers.len());
        for item in &document.spec.headers {
            let what = format!("header `{}`", item.name);
            let name = HeaderName::from_bytes(item.name.as_bytes())
                .map_err(|_| format!("{what} is not a valid header name"))?;
            let value = HeaderValue::from_str(&resolve(&what, &item.source)?)
                .map_err(|_| format!("{what} has a value that is not a valid header value"))?;
            headers.push((name, value));
        }
        let client = match &document.spec.client_tls {
            Some(tls) => Some(client_with_tls(tls, &resolve)?),
            None => None,
        };
        Ok(HttpEndpoint {
            base_url,
            headers,
            client,
        })
    }
}

/// The text a value or a secret reference gives.
fn resolve(
    what: &str,
    source: &ValueSource,
    store: &str,
    secret_stores: &HashMap<String, SecretStore>,
) -> Result<String, String> {
    match (&source.value, &source.secret_key_ref) {
        (Some(value), None) => Ok(components::yaml_text(value)),
        (None, Some(reference)) => {
            if store.is_empty() {
                return Err(format!(
                    "{what} names a secret, and `auth.secretStore` names no secret store"
                ));
            }
            let secrets = secret_stores
                .get(store)
                .ok_or_else(|| format!("{what}: no secret store `{store}` is loaded"))?;
            // A local-file secret holds one key, its name (daprd reads
            // `key` from the secret, the name when it is empty).
            let key = if reference.key.is_empty() {
                &reference.name
            } else {
                &reference.key
            };
            if *key != reference.name {
                return Err(format!(
                    "{what}: secret `{}` of `{store}` has no key `{key}` (a local-file secret has one key, its name)",
                    reference.name
                ));
            }
            secrets
                .get(&reference.name)
                .map(str::to_string)
                .ok_or_else(|| format!("{what}: secret `{}` is not in `{store}`", reference.name))
        }
        (Some(_), Some(_)) => Err(format!("{what} has both a value and a secretKeyRef")),
        (None, None) => Err(format!("{what} has neither a value nor a secretKeyRef")),
    }
}

/// A client for `http://` and `https://` URLs, `https://` checked against
/// the system's trusted roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` override
/// the platform's store). (Loading them reads files: not on a runtime.)
pub(crate) fn client_with_system_roots() -> Result<EndpointClient, String> {
    let config = hyper_rustls::ConfigBuilderExt::with_native_roots(tls_builder()?)
        .map_err(|e| format!("cannot load the system's trusted certificates: {e}"))?
        .with_no_client_auth();
    Ok(client_over(config))
}

/// rustls's client configuration, with the ring provider the workspace
/// builds (named, so that no process-wide default has to be picked).
fn tls_builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, String> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))
}

/// The client of an endpoint with `clientTLS`: its root CA instead of the
/// system's, and its client certificate.
fn client_with_tls(
    tls: &ClientTls,
    resolve: &dyn Fn(&str, &ValueSource) -> Result<String, String>,
) -> Result<EndpointClient, String> {
    if let Some(renegotiation) = &tls.renegotiation
        && renegotiation != "Never"
    {
        return Err(format!(
            "clientTLS.renegotiation `{renegotiation}` is not supported (only `Never`: the TLS library never renegotiates)"
        ));
    }
    let pem = |what: &'static str, source: &ValueSource| {
        resolve(what, source).map(|text| NamedPem { what, text })
    };
    let root_ca = match &tls.root_ca {
        Some(source) => Some(pem("clientTLS.rootCA", source)?),
        None => None,
    };
    let identity = match (&tls.certificate, &tls.private_key) {
        (Some(certificate), Some(key)) => Some((
            pem("clientTLS.certificate", certificate)?,
            pem("clientTLS.privateKey", key)?,
        )),
        (None, None) => None,
        _ => return Err("clientTLS needs both certificate and privateKey, or neither".into()),
    };
    client_with_pem(root_ca, identity)
}

/// A PEM text, and the setting it came from (for errors).
pub(crate) struct NamedPem {
    pub what: &'static str,
    pub text: String,
}

/// A client for `http://` and `https://` URLs whose `https://` is checked
/// against `root_ca` (the system's trusted roots without one), showing the
/// client certificate and key of `identity`, if given. (Without `root_ca`
/// it reads the system's roots from files: not on a runtime.)
pub(crate) fn client_with_pem(
    root_ca: Option<NamedPem>,
    identity: Option<(NamedPem, NamedPem)>,
) -> Result<EndpointClient, String> {
    let builder = tls_builder()?;
    let builder = match root_ca {
        Some(root_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(root_ca.what, &root_ca.text)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", root_ca.what))?;
            }
            builder.with_root_certificates(roots)
        }
        None => hyper_rustls::ConfigBuilderExt::with_native_roots(builder)
            .map_err(|e| format!("cannot load the system's trusted certificates: {e}"))?,
    };
    let config = match identity {
        Some((certificate, key)) => {
            let chain = certificates(certificate.what, &certificate.text)?;
            let key_der = PrivateKeyDer::from_pem_slice(key.text.as_bytes())
                .map_err(|e| format!("{} is not a PEM private key: {e}", key.what))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("{} and {}: {e}", certificate.what, key.what))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(client_over(config))
}

/// The certificates of a PEM text (at least one).
fn certificates(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no PEM certificate"));
    }
    Ok(certs)
}

/// The client over `config`: HTTP/1.1, `http://` or `https://`, with the
/// connect timeout and no Nagle delay of the sidecar's other clients.
fn client_over(config: rustls::ClientConfig) -> EndpointClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    fn secrets(dir: &std::path::Path) -> HashMap<String, SecretStore> {
        write(dir, "secrets.json", r#"{"token": "Bearer s3cret"}"#);
        let component: crate::components::Component = serde_yaml::from_str(&format!(
            "kind: Component\nmetadata: {{name: vault}}\nspec:\n  type: secretstores.local.file\n  metadata:\n  - {{name: secretsFile, value: '{}'}}\n",
            dir.join("secrets.json").display()
        ))
        .unwrap();
        HashMap::from([("vault".into(), SecretStore::open(&component).unwrap())])
    }

    #[test]
    fn an_endpoint_gives_its_url_and_headers_and_a_url_is_its_own_target() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "endpoints.yaml",
            "apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata: {name: weather}\nspec:\n  baseUrl: http://127.0.0.1:9/v2\n  headers:\n  - {name: Accept-Language, value: en-US}\n  - name: Authorization\n    secretKeyRef: {name: token, key: token}\nauth: {secretStore: vault}\n---\nkind: HTTPEndpoint\nmetadata: {name: elsewhere}\nspec: {baseUrl: 'http://127.0.0.1:9'}\nscopes: [another-app]\n",
        );
        let endpoints =
            HttpEndpoints::load(&[dir.path().into()], "me", &secrets(dir.path())).unwrap();
        assert_eq!(endpoints.names(), ["weather"]);
        let target = endpoints.target("weather").unwrap();
        assert_eq!(target.base_url, "http://127.0.0.1:9/v2");
        let headers: Vec<(&str, &str)> = target
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            headers,
            [
                ("accept-language", "en-US"),
                ("authorization", "Bearer s3cret")
            ]
        );
        assert_eq!(
            endpoints.target("https://example.com/x").unwrap().base_url,
            "https://example.com/x"
        );
        assert!(endpoints.target("elsewhere").is_none());
        assert!(endpoints.target("an-app").is_none());
        assert!(endpoints.target("ftp://example.com").is_none());
    }

    #[test]
    fn a_bad_resource_is_an_error_naming_what_is_wrong() {
        let cases = [
            (
                "spec: {baseUrl: 'example.com'}",
                "is not an http:// or https:// URL",
            ),
            ("spec: {}", "baseUrl"),
            (
                "spec:\n  baseUrl: http://x\n  headers: [{name: A, secretKeyRef: {name: token}}]",
                "`auth.secretStore` names no secret store",
            ),
            (
                "spec:\n  baseUrl: http://x\n  headers: [{name: A, secretKeyRef: {name: missing}}]\nauth: {secretStore: vault}",
                "secret `missing` is not in `vault`",
            ),
            (
                "spec:\n  baseUrl: http://x\n  headers: [{name: A, secretKeyRef: {name: token, key: other}}]\nauth: {secretStore: vault}",
                "has no key `other`",
            ),
            (
                "spec:\n  baseUrl: http://x\n  headers: [{name: 'bad header', value: x}]",
                "not a valid header name",
            ),
            (
                "spec:\n  baseUrl: http://x\n  headers: [{name: A}]",
                "neither a value nor a secretKeyRef",
            ),
            (
                "spec:\n  baseUrl: https://x\n  clientTLS: {rootCA: {value: 'not pem'}}",
                "clientTLS.rootCA holds no PEM certificate",
            ),
            (
                "spec:\n  baseUrl: https://x\n  clientTLS: {renegotiation: OnceAsClient}",
                "renegotiation `OnceAsClient` is not supported",
            ),
        ];
        for (spec, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(
                dir.path(),
                "endpoint.yaml",
                &format!("kind: HTTPEndpoint\nmetadata: {{name: ep}}\n{spec}\n"),
            );
            let err = HttpEndpoints::load(&[dir.path().into()], "me", &secrets(dir.path()))
                .err()
                .unwrap_or_else(|| panic!("{spec} was accepted"))
                .to_string();
            assert!(err.contains(expected), "{spec}: {err}");
            assert!(err.contains("endpoint.yaml"), "{err}");
        }
        // Two of one name.
        let dir = tempfile::tempdir().unwrap();
        let one = "kind: HTTPEndpoint\nmetadata: {name: ep}\nspec: {baseUrl: 'http://x'}\n";
        write(dir.path(), "a.yaml", one);
        write(dir.path(), "b.yaml", one);
        let err = HttpEndpoints::load(&[dir.path().into()], "me", &HashMap::new())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("a second HTTPEndpoint named `ep`"), "{err}");
    }
}
