//! The plain HTTP side of the server port, sans I/O: which requests go where (deepstream's
//! HTTP API, its auth endpoint, the health check, monitoring), the origin checks and the
//! preflight answers of the reference's HTTP service, and the JIF codec (`jif`).

pub mod admin;
pub mod jif;

use crate::protocol::http::RequestHead;

pub use crate::config::api::ApiConfig;

/// After the health check's path: the readiness answer.
pub const READY_SUFFIX: &str = "/ready";

/// What a plain (not WebSocket) request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A JIF request to the POST path.
    Api,
    /// Auth data to the auth path: the answer is the login's token and client data.
    Auth,
    Health,
    /// `<healthCheckPath>/ready`: whether the node can serve (`crate::health`).
    Ready,
    /// A monitoring endpoint's GET path (its index in the config's list).
    Monitoring(usize),
    /// An answer that needs nothing more: status, text body, extra headers.
    Answer(u16, String, Vec<(&'static str, String)>),
}

/// The reference's methods and request headers for cross-origin calls.
const METHODS: &str = "GET, POST, OPTIONS";
const CORS_HEADERS: [&str; 4] = [
    "X-Requested-With",
    "X-HTTP-Method-Override",
    "Content-Type",
    "Accept",
];

/// The headers every plain answer carries for the request's origin: `*`, or (with
/// `allowAllOrigins: false`) the origin itself once checked. `Err` is the 403 to send.
pub fn origin_headers(
    config: &ApiConfig,
    head: &RequestHead,
) -> Result<Vec<(&'static str, String)>, String> {
    if config.allow_all_origins {
        return Ok(vec![("Access-Control-Allow-Origin", "*".into())]);
    }
    if let Some(host) = &config.host_url {
        if head.host.as_deref() != Some(host.as_str()) {
            return Err("Forbidden Host.".into());
        }
    }
    let origin = head.origin.as_deref().or(head.referer.as_deref());
    match origin {
        Some(o) if config.origins.iter().any(|allowed| allowed == o) => Ok(vec![
            ("Access-Control-Allow-Origin", o.to_string()),
            ("Access-Control-Allow-Credentials", "true".into()),
            ("Vary", "Origin".into()),
        ]),
        Some(o) => Err(format!("Origin \"{o}\" is forbidden.")),
        None => Err(
            "CORS is configured for this. All requests must set a valid \"Origin\" header.".into(),
        ),
    }
}

/// Where a plain request goes, in the reference's order: POST by path prefix (longest first),
/// GET by path prefix, OPTIONS as a preflight, other methods 405. `monitoring` lists the GET
/// paths of the monitoring endpoints. The content type of a POST is checked before its path.
pub fn route(
    config: &ApiConfig,
    health_path: &str,
    monitoring: &[&str],
    head: &RequestHead,
) -> Route {
    let path = head.path.as_str();
    let not_found = || Route::Answer(404, "Endpoint not found.".into(), Vec::new());
    match head.method.as_str() {
        "POST" => {
            if head.content_type.as_deref() != Some("application/json") {
                return Route::Answer(
                    415,
                    "Invalid \"Content-Type\" header. Supported media types: \"application/json\""
                        .into(),
                    Vec::new(),
                );
            }
            let auth = config.enabled
                && config.enable_auth_endpoint
                && path.starts_with(config.auth_path.as_str());
            let post = config.enabled && path.starts_with(config.post_path.as_str());
            match (auth, post) {
                // Both match: the longer prefix wins, as the reference sorts them.
                (true, true) if config.auth_path.len() >= config.post_path.len() => Route::Auth,
                (_, true) => Route::Api,
                (true, false) => Route::Auth,
                (false, false) => not_found(),
            }
        }
        "GET" => {
            // Longest prefix first among the health check, monitoring and the API's GET path.
            let mut best: Option<(usize, Route)> = None;
            let mut consider = |prefix: &str, route: Route| {
                if !prefix.is_empty()
                    && path.starts_with(prefix)
                    && best.as_ref().is_none_or(|(len, _)| prefix.len() > *len)
                {
                    best = Some((prefix.len(), route));
                }
            };
            consider(health_path, Route::Health);
            let ready = format!("{health_path}{READY_SUFFIX}");
            if !health_path.is_empty() {
                consider(&ready, Route::Ready);
            }
            for (i, p) in monitoring.iter().enumerate() {
                consider(p, Route::Monitoring(i));
            }
            if config.enabled {
                consider(
                    &config.get_path,
                    Route::Answer(
                        400,
                        "Reading records via HTTP GET is not yet implemented, please use a post \
                         request instead."
                            .into(),
                        Vec::new(),
                    ),
                );
            }
            best.map_or_else(not_found, |(_, r)| r)
        }
        "OPTIONS" => preflight(config, head),
        _ => Route::Answer(
            405,
            format!("Unsupported method. Supported methods: {METHODS}"),
            Vec::new(),
        ),
    }
}

/// The answer to a CORS preflight, as the reference gives it.
fn preflight(config: &ApiConfig, head: &RequestHead) -> Route {
    let Some(method) = head.cors_request_method.as_deref() else {
        return Route::Answer(
            400,
            "Missing header \"Access-Control-Request-Method\".".into(),
            Vec::new(),
        );
    };
    if !METHODS.split(", ").any(|m| m == method) {
        return Route::Answer(
            403,
            format!("Method {method} is forbidden. Supported methods: {METHODS}"),
            Vec::new(),
        );
    }
    let Some(asked) = head.cors_request_headers.as_deref() else {
        return Route::Answer(
            400,
            "Missing header \"Access-Control-Request-Headers\".".into(),
            Vec::new(),
        );
    };
    let allowed: Vec<&str> = CORS_HEADERS
        .iter()
        .copied()
        .chain(config.headers.iter().map(String::as_str))
        .collect();
    let listed = allowed.join(", ");
    for header in asked.split(',') {
        let header = header.trim();
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(header)) {
            return Route::Answer(
                403,
                format!("Header {header} is forbidden. Supported headers: {listed}"),
                Vec::new(),
            );
        }
    }
    Route::Answer(
        204,
        String::new(),
        vec![
            ("Access-Control-Allow-Methods", METHODS.into()),
            ("Access-Control-Allow-Headers", listed),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::parse_head;

    fn head(text: &str) -> RequestHead {
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    fn status(route: Route) -> u16 {
        match route {
            Route::Answer(status, ..) => status,
            Route::Api | Route::Auth | Route::Health | Route::Ready | Route::Monitoring(_) => 200,
        }
    }

    #[test]
    fn requests_go_where_the_reference_sends_them() {
        let c = ApiConfig::default();
        let r = |text: &str| route(&c, "/health-check", &["/monitoring"], &head(text));
        let json = "Content-Type: application/json\r\n";
        assert_eq!(r(&format!("POST /api HTTP/1.1\r\n{json}\r\n")), Route::Api);
        assert_eq!(
            r(&format!("POST /api/auth HTTP/1.1\r\n{json}\r\n")),
            Route::Auth
        );
        assert_eq!(
            r(&format!("POST /apix?x=1 HTTP/1.1\r\n{json}\r\n")),
            Route::Api
        );
        assert_eq!(
            status(r(&format!("POST /nope HTTP/1.1\r\n{json}\r\n"))),
            404
        );
        assert_eq!(
            status(r("POST /api HTTP/1.1\r\nContent-Type: text/plain\r\n\r\n")),
            415
        );
        assert_eq!(status(r("POST /api HTTP/1.1\r\n\r\n")), 415);
        assert_eq!(r("GET /health-check HTTP/1.1\r\n\r\n"), Route::Health);
        assert_eq!(r("GET /health-check/ready HTTP/1.1\r\n\r\n"), Route::Ready);
        assert_eq!(r("GET /monitoring HTTP/1.1\r\n\r\n"), Route::Monitoring(0));
        assert_eq!(status(r("GET /api HTTP/1.1\r\n\r\n")), 400);
        assert_eq!(status(r("GET /x HTTP/1.1\r\n\r\n")), 404);
        assert_eq!(status(r("PUT /api HTTP/1.1\r\n\r\n")), 405);
        let off = ApiConfig {
            enabled: false,
            ..ApiConfig::default()
        };
        let h = head(&format!("POST /api HTTP/1.1\r\n{json}\r\n"));
        assert_eq!(status(route(&off, "/health-check", &[], &h)), 404);
    }

    #[test]
    fn preflights() {
        let c = ApiConfig {
            headers: vec!["Authorization".into()],
            ..ApiConfig::default()
        };
        let r = |text: &str| route(&c, "/h", &[], &head(text));
        let ok = r("OPTIONS /api HTTP/1.1\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type, authorization\r\n\r\n");
        assert_eq!(status(ok), 204);
        assert_eq!(status(r("OPTIONS /api HTTP/1.1\r\n\r\n")), 400);
        assert_eq!(
            status(r("OPTIONS /api HTTP/1.1\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: a\r\n\r\n")),
            403
        );
        assert_eq!(
            status(r("OPTIONS /api HTTP/1.1\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: X-Evil\r\n\r\n")),
            403
        );
    }

    #[test]
    fn origins() {
        let all = ApiConfig::default();
        let h = head("GET / HTTP/1.1\r\nOrigin: http://x\r\n\r\n");
        assert_eq!(
            origin_headers(&all, &h).unwrap(),
            vec![("Access-Control-Allow-Origin", "*".to_string())]
        );
        let some = ApiConfig {
            allow_all_origins: false,
            origins: vec!["http://ok".into()],
            host_url: None,
            ..ApiConfig::default()
        };
        assert!(origin_headers(&some, &h).unwrap_err().contains("http://x"));
        let good = head("GET / HTTP/1.1\r\nOrigin: http://ok\r\n\r\n");
        assert_eq!(origin_headers(&some, &good).unwrap()[0].1, "http://ok");
        let none = head("GET / HTTP/1.1\r\n\r\n");
        assert!(origin_headers(&some, &none)
            .unwrap_err()
            .starts_with("CORS"));
        let by_referer = head("GET / HTTP/1.1\r\nReferer: http://ok\r\n\r\n");
        assert!(origin_headers(&some, &by_referer).is_ok());
        let host = ApiConfig {
            host_url: Some("a:1".into()),
            ..some
        };
        let wrong_host = head("GET / HTTP/1.1\r\nHost: b:1\r\nOrigin: http://ok\r\n\r\n");
        assert_eq!(
            origin_headers(&host, &wrong_host).unwrap_err(),
            "Forbidden Host."
        );
    }
}
