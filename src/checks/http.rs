//! `http_2xx`: one HTTP request per attempt; the final status after following
//! up to 10 redirects must be 200–299.

use std::str::FromStr;
use std::sync::OnceLock;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};

use super::{AttemptFuture, BuildError, Check, error_chain};
use crate::config::model::Http2xxSpec;

/// The original's User-Agent; a `User-Agent` header in the spec replaces it.
const USER_AGENT: &str = "anycastd/1.0 (http_2xx checker)";
/// Bytes of body read so the connection can be reused; the rest is dropped.
const BODY_LIMIT: usize = 64 * 1024;
/// Idle connections kept per host: each holds ~20 KiB of buffers, and with
/// services spread over schedule slots one slot's worth is enough.
const POOL_IDLE_PER_HOST: usize = 128;

pub struct Http2xx {
    method: Method,
    url: Url,
    headers: HeaderMap,
    payload: Option<String>,
}

/// One client for every HTTP check: one connection pool, one TLS setup.
fn shared_client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        crate::install_crypto_provider();
        Client::builder()
            .redirect(reqwest::redirect::Policy::limited(10))
            .user_agent(USER_AGENT)
            // A health check must reach the service itself, never a proxy.
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .build()
            .unwrap_or_else(|_| Client::new())
    })
}

impl Http2xx {
    pub fn new(spec: &Http2xxSpec) -> Result<Http2xx, BuildError> {
        let url = Url::parse(&spec.url)
            .map_err(|e| BuildError::Invalid(format!("url \"{}\": {e}", spec.url)))?;
        let method = Method::from_str(&spec.method)
            .map_err(|_| BuildError::Invalid(format!("method \"{}\" is not valid", spec.method)))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let name = HeaderName::from_str(name)
                .map_err(|_| BuildError::Invalid(format!("header name \"{name}\" is not valid")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                BuildError::Invalid(format!("header \"{name}\" has an invalid value"))
            })?;
            headers.insert(name, value);
        }
        Ok(Http2xx {
            method,
            url,
            headers,
            payload: spec.payload.clone(),
        })
    }
}

impl Check for Http2xx {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            let mut request = shared_client()
                .request(self.method.clone(), self.url.clone())
                .headers(self.headers.clone());
            if let Some(payload) = &self.payload {
                request = request.body(payload.clone());
            }
            let mut response = request
                .send()
                .await
                .map_err(|e| format!("{} {}: {}", self.method, self.url, error_chain(&e)))?;
            let status = response.status();
            let final_url = response.url().clone();
            let mut read = 0;
            while read < BODY_LIMIT {
                match response.chunk().await {
                    Ok(Some(chunk)) => read += chunk.len(),
                    _ => break,
                }
            }
            if status.is_success() {
                Ok(())
            } else {
                Err(format!(
                    "expected status 2xx, got {status} from {final_url}"
                ))
            }
        })
    }
}
