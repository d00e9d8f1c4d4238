//! Which names this server answers to. A web page on another site can make the browser send
//! requests to `127.0.0.1` by DNS rebinding: its own name (`evil.example`) resolves to
//! loopback after the page has loaded. Such a request still carries the attacker's name in
//! `Host`, and its `Origin` is the attacker's too. So both listeners accept only the names
//! they are known by, before any route runs, and writes and WebSockets accept only the UI's
//! own origins.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::uri::Authority;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error(
        "CODEFLUX_ALLOWED_HOSTS entry {0:?} is not a host name: give names like codeflux.lan or codeflux.lan:8080, comma-separated"
    )]
    AllowedHost(String),
    #[error(
        "CODEFLUX_PREVIEW_URL {0:?} must be an http:// or https:// URL whose host starts with {{project}}, e.g. http://{{project}}.localhost:3001"
    )]
    PreviewUrl(String),
    #[error(
        "CODEFLUX_APPS_URL {0:?} must be an http:// or https:// URL whose host starts with {{app}}, e.g. http://{{app}}.apps.localhost:3001"
    )]
    AppsUrl(String),
}

/// A name, and the port it must come with (`None`: any port).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    host: String,
    port: Option<u16>,
}

impl Name {
    fn matches(&self, host: &str, port: Option<u16>) -> bool {
        self.host == host && self.port.is_none_or(|wanted| Some(wanted) == port)
    }
}

/// The names and origins the UI and API answer to.
#[derive(Debug, Clone)]
pub struct UiHosts {
    /// Set when listening on one address other machines reach (a LAN bind).
    listen: Option<Name>,
    /// Every IP literal is accepted when listening on all interfaces: a rebinding page
    /// cannot make its requests carry an IP address as their `Host`.
    any_ip: bool,
    /// `CODEFLUX_PUBLIC_URL`: its origin, and its name.
    public_origin: Option<String>,
    public_name: Option<Name>,
    /// `CODEFLUX_ALLOWED_HOSTS`.
    allowed: Vec<Name>,
}

const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl UiHosts {
    /// `public_origin` is the origin of `CODEFLUX_PUBLIC_URL` (already checked);
    /// `allowed` the entries of `CODEFLUX_ALLOWED_HOSTS`.
    pub fn new(
        listen: SocketAddr,
        public_origin: Option<&str>,
        allowed: &[String],
    ) -> Result<Self, HostsError> {
        let ip = listen.ip();
        let specific = !ip.is_loopback() && !ip.is_unspecified();
        let public_name = public_origin.and_then(|origin| {
            let url = reqwest::Url::parse(origin).ok()?;
            Some(Name {
                host: normalise(url.host_str()?),
                port: url.port_or_known_default(),
            })
        });
        Ok(Self {
            listen: specific.then(|| Name {
                host: normalise(&authority_host(&listen.to_string())),
                port: Some(listen.port()),
            }),
            any_ip: ip.is_unspecified(),
            public_origin: public_origin.map(str::to_string),
            public_name,
            allowed: parse_allowed(allowed)?,
        })
    }

    /// Whether a request's `Host` (`name` or `name:port`) names this UI.
    ///
    /// Loopback names are accepted on any port: a container's published port may differ
    /// from the listen port, and no rebinding page can send them.
    pub fn allows(&self, authority: &str) -> bool {
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        let public_port = |name: &Name| {
            // Behind a reverse proxy the `Host` often comes without the public port.
            name.host == host && (port.is_none() || port == name.port)
        };
        LOOPBACK_NAMES.contains(&host.as_str())
            || (self.any_ip && is_ip_literal(&host))
            || self
                .listen
                .as_ref()
                .is_some_and(|name| name.matches(&host, port))
            || self.public_name.as_ref().is_some_and(public_port)
            || self.allowed.iter().any(|name| name.matches(&host, port))
    }

    /// Whether a browser's `Origin` is one of the UI's own: the public URL's, the one the
    /// request was sent to (its `Host`, already allowed), or a `CODEFLUX_ALLOWED_HOSTS`
    /// name. Another local site (`http://localhost:8080`) is none of these.
    pub fn allows_origin(&self, origin: &str, request_host: &str) -> bool {
        if self.public_origin.as_deref() == Some(origin) {
            return true;
        }
        let Some(authority) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            return false;
        };
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        split_authority(request_host) == Some((host.clone(), port))
            || self.allowed.iter().any(|name| name.matches(&host, port))
    }

    /// The one line a refused request gets.
    pub fn refusal(&self, authority: &str) -> String {
        format!(
            "CodeFlux does not answer to the host {authority:?}: add it to CODEFLUX_ALLOWED_HOSTS (comma-separated) or set CODEFLUX_PUBLIC_URL to the address you open CodeFlux at\n"
        )
    }
}

/// The names previews are served at: `<project id>.` + a suffix.
#[derive(Debug, Clone)]
pub struct PreviewHosts {
    suffixes: Vec<String>,
}

impl Default for PreviewHosts {
    /// `<project>.localhost`, the default `CODEFLUX_PREVIEW_URL`.
    fn default() -> Self {
        Self {
            suffixes: vec!["localhost".into()],
        }
    }
}

impl PreviewHosts {
    /// The suffix of the preview URL template (`http://{project}.localhost:3001` →
    /// `localhost`), and each `CODEFLUX_ALLOWED_HOSTS` name as another one.
    pub fn new(preview_url_template: &str, allowed: &[String]) -> Result<Self, HostsError> {
        let mut suffixes = vec![preview_suffix(preview_url_template)?];
        for name in parse_allowed(allowed)? {
            if !suffixes.contains(&name.host) {
                suffixes.push(name.host);
            }
        }
        Ok(Self { suffixes })
    }

    /// The project a preview request's `Host` names, if it is a preview host at all.
    pub fn project(&self, authority: &str) -> Option<Uuid> {
        let (host, _) = split_authority(authority)?;
        let (label, suffix) = host.split_once('.')?;
        if !self.suffixes.iter().any(|known| known == suffix) {
            return None;
        }
        let id = Uuid::parse_str(label).ok()?;
        // Only the hyphenated form that preview URLs use: one project, one origin.
        (id.hyphenated().to_string() == label).then_some(id)
    }

    pub fn refusal(&self, authority: &str) -> String {
        format!(
            "{authority:?} is not a preview address (<project id>.{}): set CODEFLUX_PREVIEW_URL to the address previews are opened at, or add its name to CODEFLUX_ALLOWED_HOSTS\n",
            self.suffixes[0]
        )
    }
}

/// Where published apps answer: `CODEFLUX_APPS_URL`, a URL whose host starts with `{app}.`
/// (`http://{app}.apps.localhost:3001` unless configured). The preview listener serves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppsUrl {
    template: String,
    suffix: String,
}

impl AppsUrl {
    pub fn new(template: &str) -> Result<Self, HostsError> {
        let invalid = || HostsError::AppsUrl(template.to_string());
        let url =
            reqwest::Url::parse(&template.replace("{app}", "probe")).map_err(|_| invalid())?;
        if !matches!(url.scheme(), "http" | "https") || url.path() != "/" {
            return Err(invalid());
        }
        let host = normalise(url.host_str().ok_or_else(invalid)?);
        let suffix = host
            .strip_prefix("probe.")
            .filter(|suffix| !suffix.is_empty())
            .ok_or_else(invalid)?
            .to_string();
        Ok(Self {
            template: template.trim_end_matches('/').to_string(),
            suffix,
        })
    }

    /// `<name>.apps.localhost` on the preview listener's port.
    pub fn default_for(preview_port: u16) -> Self {
        Self::new(&format!("http://{{app}}.apps.localhost:{preview_port}"))
            .expect("the default apps URL is valid")
    }

    pub fn url_for(&self, name: &str) -> String {
        format!("{}/", self.template.replace("{app}", name))
    }

    /// The app a request's `Host` names, if it is an app address at all.
    pub fn app(&self, authority: &str) -> Option<String> {
        let (host, _) = split_authority(authority)?;
        let (label, suffix) = host.split_once('.')?;
        (suffix == self.suffix && !label.is_empty()).then(|| label.to_string())
    }
}

/// The name a request was sent to: `Host`, or the URI's authority (HTTP/2).
pub fn request_authority<B>(request: &axum::http::Request<B>) -> String {
    request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.to_string())
        })
        .unwrap_or_default()
}

/// The part of the template's host after `{project}.`.
fn preview_suffix(template: &str) -> Result<String, HostsError> {
    let invalid = || HostsError::PreviewUrl(template.to_string());
    let probe = Uuid::nil().to_string();
    let url = reqwest::Url::parse(&template.replace("{project}", &probe)).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid());
    }
    let host = normalise(url.host_str().ok_or_else(invalid)?);
    host.strip_prefix(&format!("{probe}."))
        .filter(|suffix| !suffix.is_empty())
        .map(str::to_string)
        .ok_or_else(invalid)
}

fn parse_allowed(entries: &[String]) -> Result<Vec<Name>, HostsError> {
    entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let invalid = || HostsError::AllowedHost(entry.to_string());
            if entry.contains('/') || entry.contains('@') {
                return Err(invalid());
            }
            let (host, port) = split_authority(entry).ok_or_else(invalid)?;
            Ok(Name { host, port })
        })
        .collect()
}

/// `Name:8080` → (`name`, `Some(8080)`); `[::1]` keeps its brackets. `None` for anything
/// that is not a bare authority (user info, spaces, an empty name).
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let parsed = Authority::from_str(authority).ok()?;
    let host = normalise(parsed.host());
    // What follows the name must be nothing or `:<number>` (`name:x` is no authority).
    let rest = &parsed.as_str()[parsed.host().len()..];
    let port = match rest.strip_prefix(':') {
        None if rest.is_empty() => None,
        Some(digits) => Some(digits.parse::<u16>().ok()?),
        None => return None,
    };
    (!host.is_empty()).then_some((host, port))
}

fn authority_host(authority: &str) -> String {
    split_authority(authority)
        .map(|(host, _)| host)
        .unwrap_or_default()
}

/// Names compare without case and without a trailing dot (`LOCALHOST.` is `localhost`).
fn normalise(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn is_ip_literal(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    IpAddr::from_str(bare).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> UiHosts {
        UiHosts::new("127.0.0.1:3000".parse().unwrap(), None, &[]).unwrap()
    }

    #[test]
    fn the_default_ui_answers_to_loopback_names_only() {
        let hosts = local();
        for good in [
            "localhost:3000",
            "127.0.0.1:3000",
            "[::1]:3000",
            "LOCALHOST:3000",
            "localhost.:3000",
            "localhost:8080",
        ] {
            assert!(hosts.allows(good), "{good}");
        }
        for bad in [
            "evil.example:3000",
            "evil.example",
            "localhost.evil.example:3000",
            "0193a.localhost:3000",
            "192.168.1.20:3000",
            "127.0.0.1.nip.io:3000",
            "user@localhost:3000",
            "",
            "localhost:x",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
    }

    #[test]
    fn lan_binds_public_urls_and_allowed_hosts_add_names() {
        let lan = UiHosts::new("192.168.1.20:3000".parse().unwrap(), None, &[]).unwrap();
        assert!(lan.allows("192.168.1.20:3000"));
        assert!(!lan.allows("192.168.1.21:3000"));
        assert!(!lan.allows("192.168.1.20:3999"));

        let everywhere = UiHosts::new(
            "0.0.0.0:3000".parse().unwrap(),
            Some("https://codeflux.example.com"),
            &["codeflux.lan".into(), "box.lan:8443".into()],
        )
        .unwrap();
        assert!(
            everywhere.allows("10.0.0.5:3000"),
            "IP literals, all interfaces"
        );
        assert!(everywhere.allows("[fd00::5]:3000"));
        assert!(everywhere.allows("codeflux.example.com"));
        assert!(everywhere.allows("codeflux.example.com:443"));
        assert!(!everywhere.allows("codeflux.example.com:8443"));
        assert!(everywhere.allows("codeflux.lan:3000"));
        assert!(everywhere.allows("box.lan:8443"));
        assert!(!everywhere.allows("box.lan:3000"));
        assert!(!everywhere.allows("evil.example:3000"));
        assert!(
            !local().allows("10.0.0.5:3000"),
            "only when listening everywhere"
        );
    }

    #[test]
    fn origins_must_be_the_uis_own() {
        let hosts = UiHosts::new(
            "127.0.0.1:3000".parse().unwrap(),
            Some("https://codeflux.example.com"),
            &["codeflux.lan".into()],
        )
        .unwrap();
        assert!(hosts.allows_origin("http://localhost:3000", "localhost:3000"));
        assert!(hosts.allows_origin("http://127.0.0.1:3000", "127.0.0.1:3000"));
        assert!(hosts.allows_origin("https://codeflux.example.com", "127.0.0.1:3000"));
        assert!(hosts.allows_origin("http://codeflux.lan:3000", "127.0.0.1:3000"));
        for (origin, host) in [
            ("http://evil.example:3000", "localhost:3000"),
            ("http://localhost:8080", "localhost:3000"),
            ("http://0193a.localhost:3001", "localhost:3000"),
            ("null", "localhost:3000"),
            ("file://", "localhost:3000"),
            ("https://codeflux.example.com.evil", "localhost:3000"),
        ] {
            assert!(!hosts.allows_origin(origin, host), "{origin} to {host}");
        }
    }

    #[test]
    fn preview_hosts_are_a_project_id_and_the_suffix() {
        let id = Uuid::now_v7();
        let hosts = PreviewHosts::default();
        assert_eq!(hosts.project(&format!("{id}.localhost:3001")), Some(id));
        assert_eq!(hosts.project(&format!("{id}.LOCALHOST:3001")), Some(id));
        for bad in [
            format!("{id}.evil.example:3001"),
            format!("{id}.localhost.evil.example"),
            format!("x.{id}.localhost:3001"),
            "nothing.localhost:3001".to_string(),
            format!("{}.localhost", id.simple()),
            "localhost:3001".to_string(),
        ] {
            assert_eq!(hosts.project(&bad), None, "{bad}");
        }
        let proxied = PreviewHosts::new(
            "https://{project}.preview.codeflux.example.com",
            &["codeflux.lan".into()],
        )
        .unwrap();
        assert_eq!(
            proxied.project(&format!("{id}.preview.codeflux.example.com")),
            Some(id)
        );
        assert_eq!(
            proxied.project(&format!("{id}.codeflux.lan:3001")),
            Some(id)
        );
        assert_eq!(proxied.project(&format!("{id}.localhost:3001")), None);
        assert!(proxied.refusal("x").contains("CODEFLUX_PREVIEW_URL"));
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        for template in [
            "http://preview.example.com/{project}",
            "{project}",
            "ftp://{project}.x",
        ] {
            let error = PreviewHosts::new(template, &[]).unwrap_err();
            assert!(
                error.to_string().contains("CODEFLUX_PREVIEW_URL"),
                "{error}"
            );
        }
        for entry in ["http://codeflux.lan", "codeflux.lan/x", "a b"] {
            let error =
                UiHosts::new("127.0.0.1:3000".parse().unwrap(), None, &[entry.into()]).unwrap_err();
            assert!(
                error.to_string().contains("CODEFLUX_ALLOWED_HOSTS"),
                "{error}"
            );
        }
    }

    #[test]
    fn app_addresses_name_one_app_under_the_apps_suffix() {
        let apps = AppsUrl::default_for(3001);
        assert_eq!(
            apps.url_for("brave-otter"),
            "http://brave-otter.apps.localhost:3001/"
        );
        assert_eq!(
            apps.app("brave-otter.apps.localhost:3001").as_deref(),
            Some("brave-otter")
        );
        assert_eq!(
            apps.app("Brave-Otter.APPS.localhost").as_deref(),
            Some("brave-otter")
        );
        for other in [
            "apps.localhost:3001",
            "a.b.apps.localhost",
            "x.localhost",
            "evil.example",
        ] {
            assert_eq!(apps.app(other), None, "{other}");
        }
        let custom = AppsUrl::new("https://{app}.apps.example.com").unwrap();
        assert_eq!(custom.url_for("shop"), "https://shop.apps.example.com/");
        for bad in [
            "ftp://{app}.x",
            "http://apps.{app}.x",
            "http://{app}.x/path",
            "nonsense",
        ] {
            assert!(AppsUrl::new(bad).is_err(), "{bad}");
        }
    }
}
