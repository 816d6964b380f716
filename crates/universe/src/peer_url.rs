//! Peer URLs in one spelling, so that one node is one point set on every ring.
//!
//! Every URL that reaches a ring goes through [`normalize_peer_url`] first: this node's
//! own (in [`Universe::builder`](crate::Universe::builder)) and every listed peer's (in
//! [`Universe::set_peers`](crate::Universe::set_peers), `add_peer` and `remove_peer`).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Error, ErrorKind};

/// A peer URL in the one spelling every node hashes, or an [`ErrorKind::Config`] error
/// that names the URL.
///
/// - The scheme (any `letter *(letter / digit / + / - / .)`, e.g. `http`, `https`, or a test
///   transport's `inproc`) and the host are lower-cased. A URL without `scheme://` is a
///   bare peer name (what in-process tests use) and is normalised the same way.
/// - A default port is dropped: 80 for `http`, 443 for `https`. A port is written in
///   decimal without leading zeros; an empty port (`host:`) is the default.
/// - An IPv6 host is written in brackets, in its canonical form (`[::1]`). Without
///   brackets a host with several `:` is read as an IPv6 address with no port, so a port
///   needs the brackets: `http://[fe80::1]:8080`.
/// - A path other than `/` is kept (a peer may sit under a path), trailing `/` dropped.
/// - Rejected: an empty URL or host, any whitespace or control character (surrounding
///   ones included: a list's parser trims its entries), a user name, a query or a
///   fragment, a malformed scheme, port or IPv6 address.
///
/// ```
/// use galaxycache::universe::normalize_peer_url;
///
/// assert_eq!(normalize_peer_url("HTTP://Cache-1:80/").unwrap(), "http://cache-1");
/// assert_eq!(normalize_peer_url("https://[0:0::1]:443").unwrap(), "https://[::1]");
/// assert_eq!(normalize_peer_url("http://10.0.0.1:9001/cache/").unwrap(), "http://10.0.0.1:9001/cache");
/// assert!(normalize_peer_url("http://10.0.0.1 :9001").is_err());
/// ```
pub fn normalize_peer_url(url: &str) -> Result<String, Error> {
    PeerUrl::parse(url).map(|p| p.to_string())
}

/// The peer list a ring is built from: `listed` normalised, this node (`self_url`) once.
///
/// A peer listed twice in one spelling (after normalisation) is kept once. Two spellings
/// of one node (loopback names for one port: `localhost`, `127.0.0.1`, `[::1]`) are an
/// error, and so is a list that names this node twice or under another spelling: either
/// would put one node on the ring twice.
pub(crate) fn peer_list<I, S>(self_url: &str, listed: I) -> Result<Vec<String>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let me = PeerUrl::parse(self_url)
        .map_err(|e| config(format!("this node's own URL is invalid: {}", e.message())))?;
    let me_text = me.to_string();
    let mut seen: HashMap<String, (String, String)> = HashMap::new();
    seen.insert(me.node_key(), (me_text.clone(), me_text.clone()));
    let mut self_named: Option<String> = None;
    let mut urls = Vec::new();
    for raw in listed {
        let raw = raw.as_ref();
        let url = PeerUrl::parse(raw)?;
        let (key, text) = (url.node_key(), url.to_string());
        let Some((known, first)) = seen.get(&key) else {
            seen.insert(key, (text.clone(), raw.to_owned()));
            urls.push(text);
            continue;
        };
        if *known == me_text {
            check_self(&me_text, &text, raw, self_named.as_deref())?;
            self_named = Some(raw.to_owned());
        } else if *known != text {
            return Err(config(format!(
                "the peer list names one node in two spellings, {first:?} and {raw:?}: \
                 list it once, as every node lists it"
            )));
        }
    }
    urls.push(me_text);
    Ok(urls)
}

/// A listed URL `raw` (normalised: `text`) that names this node (`me`): fine once, in
/// this node's own spelling.
fn check_self(me: &str, text: &str, raw: &str, named_before: Option<&str>) -> Result<(), Error> {
    if let Some(before) = named_before {
        return Err(config(format!(
            "the peer list names this node ({me}) twice, as {before:?} and {raw:?}"
        )));
    }
    if text != me {
        return Err(config(format!(
            "the peer list names this node ({me}) as {raw:?}: list it as {me:?}, so every \
             node hashes one spelling"
        )));
    }
    Ok(())
}

/// Whether `a` and `b` (both valid peer URLs) name one node: equal once normalised, with
/// the loopback names for one port taken as one host.
pub(crate) fn same_node(a: &str, b: &str) -> bool {
    match (PeerUrl::parse(a), PeerUrl::parse(b)) {
        (Ok(a), Ok(b)) => a.node_key() == b.node_key(),
        _ => a == b,
    }
}

fn config(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

/// A host, as normalisation writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    /// A name or an IPv4 address, lower-cased.
    Name(String),
    /// An IPv6 address, written in brackets.
    V6(Ipv6Addr),
}

impl Host {
    fn is_loopback(&self) -> bool {
        match self {
            Host::Name(name) => {
                name == "localhost" || name.parse::<Ipv4Addr>() == Ok(Ipv4Addr::LOCALHOST)
            }
            Host::V6(ip) => *ip == Ipv6Addr::LOCALHOST,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::V6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// A peer URL split into the parts normalisation looks at; `Display` is the normal form.
#[derive(Clone, Debug)]
struct PeerUrl<'a> {
    scheme: Option<String>,
    host: Host,
    port: Option<u16>,
    path: &'a str,
}

impl<'a> PeerUrl<'a> {
    fn parse(url: &'a str) -> Result<Self, Error> {
        let invalid = |why: &str| config(format!("invalid peer URL {url:?}: {why}"));
        if url.is_empty() {
            return Err(invalid("empty"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace or a control character"));
        }
        if url.contains(['?', '#']) {
            return Err(invalid("a peer URL has no query or fragment"));
        }
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (Some(parse_scheme(scheme).map_err(invalid)?), rest),
            None => (None, url),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(invalid("a peer URL has no user name"));
        }
        let (host, port) = parse_authority(authority).map_err(|e| invalid(&e))?;
        let default_port = match scheme.as_deref() {
            Some("http") => Some(80),
            Some("https") => Some(443),
            _ => None,
        };
        Ok(PeerUrl {
            port: port.filter(|p| Some(*p) != default_port),
            scheme,
            host,
            path: path.trim_end_matches('/'),
        })
    }

    /// The normal form, with a loopback host written `localhost`: equal for two
    /// spellings of one node.
    fn node_key(&self) -> String {
        if !self.host.is_loopback() {
            return self.to_string();
        }
        let loopback = PeerUrl {
            host: Host::Name("localhost".to_owned()),
            ..self.clone()
        };
        loopback.to_string()
    }
}

impl fmt::Display for PeerUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scheme) = &self.scheme {
            write!(f, "{scheme}://")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        f.write_str(self.path)
    }
}

/// A scheme, lower-cased: a letter, then letters, digits, `+`, `-` or `.`.
fn parse_scheme(scheme: &str) -> Result<String, &'static str> {
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return Err("malformed scheme");
    }
    Ok(scheme.to_ascii_lowercase())
}

/// `host[:port]`, `[v6][:port]` or a bare IPv6 address.
fn parse_authority(authority: &str) -> Result<(Host, Option<u16>), String> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (ip, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address without its closing `]`")?;
        let port = match after {
            "" => None,
            _ => parse_port(after.strip_prefix(':').ok_or("junk after `]`")?)?,
        };
        return Ok((Host::V6(parse_v6(ip)?), port));
    }
    if authority.matches(':').count() > 1 {
        return Ok((Host::V6(parse_v6(authority)?), None));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, parse_port(port)?),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    if host.contains([']', '[']) {
        return Err("a stray `[` or `]` in the host".to_owned());
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => Ok((Host::V6(ip), port)),
        _ => Ok((Host::Name(host.to_ascii_lowercase()), port)),
    }
}

fn parse_v6(text: &str) -> Result<Ipv6Addr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IPv6 address"))
}

/// A decimal port; empty means the scheme's default.
fn parse_port(text: &str) -> Result<Option<u16>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {text:?} is not a number"));
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("port {text} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        let table = [
            ("http://10.0.0.1:9001", "http://10.0.0.1:9001"),
            ("HTTP://Cache-1.Example:9001", "http://cache-1.example:9001"),
            ("http://10.0.0.1:9001/", "http://10.0.0.1:9001"),
            ("http://10.0.0.1:9001///", "http://10.0.0.1:9001"),
            ("http://a:80", "http://a"),
            ("http://a:080/", "http://a"),
            ("http://a:443", "http://a:443"),
            ("https://a:443", "https://a"),
            ("https://a:80", "https://a:80"),
            ("http://a:", "http://a"),
            ("http://[::1]:9001", "http://[::1]:9001"),
            ("http://[0:0:0::1]:80/", "http://[::1]"),
            ("http://[FE80::A]:9001", "http://[fe80::a]:9001"),
            ("http://fe80::a", "http://[fe80::a]"),
            ("http://a:9001/Cache/Peers/", "http://a:9001/Cache/Peers"),
            ("inproc://node-0", "inproc://node-0"),
            ("INPROC://Node-0:80", "inproc://node-0:80"),
            ("a", "a"),
            ("Me", "me"),
            ("node-1:7", "node-1:7"),
        ];
        for (given, normal) in table {
            assert_eq!(normalize_peer_url(given).as_deref(), Ok(normal), "{given}");
            assert_eq!(
                normalize_peer_url(normal).as_deref(),
                Ok(normal),
                "{normal}"
            );
        }
    }

    #[test]
    fn rejects_name_the_url_and_why() {
        let table = [
            ("", "empty"),
            (" http://a", "whitespace"),
            ("http://a ", "whitespace"),
            ("http://a b", "whitespace"),
            ("http://a\u{7}", "control"),
            ("http://", "no host"),
            ("http://:9001", "no host"),
            ("http:///path", "no host"),
            ("http://a:x", "not a number"),
            ("http://a:99999", "out of range"),
            ("http://a:+80", "not a number"),
            ("http://[::1", "closing"),
            ("http://[::1]x", "junk"),
            ("http://[nope]:1", "not an IPv6"),
            ("http://1:2:x", "not an IPv6"),
            ("http://u@a", "user name"),
            ("http://a/?x=1", "query"),
            ("http://a#f", "fragment"),
            ("1http://a", "scheme"),
            ("ht tp://a", "whitespace"),
            ("://a", "scheme"),
        ];
        for (given, why) in table {
            let e = normalize_peer_url(given).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{given:?}");
            assert!(e.message().contains(why), "{given:?}: {e}");
            assert!(
                e.message().contains(&format!("{given:?}")),
                "{given:?}: {e}"
            );
        }
    }

    #[test]
    fn lists_keep_one_of_each_and_add_this_node() {
        let me = "http://127.0.0.1:9001";
        let list = peer_list(me, ["http://b:1/", "HTTP://B:1", me, "http://c:1"]).unwrap();
        assert_eq!(list, ["http://b:1", "http://c:1", me]);
        assert_eq!(peer_list(me, ["http://b:1"]).unwrap(), ["http://b:1", me]);
        assert_eq!(peer_list(me, [me.to_owned() + "/"]).unwrap(), [me]);
    }

    #[test]
    fn this_node_twice_or_in_another_spelling_is_an_error() {
        let me = "http://127.0.0.1:9001";
        for list in [
            vec![me, "http://127.0.0.1:9001/"],
            vec!["http://localhost:9001"],
            vec!["http://[::1]:9001", "http://b:1"],
            vec![me, "http://LOCALHOST:9001"],
        ] {
            let e = peer_list(me, &list).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.message().contains("this node"), "{list:?}: {e}");
        }
        // Another port of the loopback host is another node.
        assert!(peer_list(me, ["http://localhost:9002"]).is_ok());
    }

    #[test]
    fn another_peer_in_two_spellings_is_an_error() {
        let e = peer_list("http://a:1", ["http://localhost:2", "http://[::1]:2"]).unwrap_err();
        assert!(e.message().contains("two spellings"), "{e}");
        assert!(same_node("http://localhost:2/", "http://127.0.0.1:2"));
        assert!(!same_node("http://localhost:2", "https://localhost:2"));
    }

    #[test]
    fn universes_normalise_and_refuse_this_node_twice_keeping_the_ring() {
        let net = crate::InProcessNetwork::new();
        let u = crate::Universe::builder("HTTP://127.0.0.1:20101/")
            .protocol(net.protocol())
            .build();
        assert_eq!(u.self_url(), "http://127.0.0.1:20101");
        u.set_peers(["http://127.0.0.1:20101/", "http://b:1", "http://B:1/"])
            .unwrap();
        let ring = ["http://127.0.0.1:20101", "http://b:1"];
        assert_eq!(u.peers(), ring);
        for bad in [
            vec!["http://localhost:20101", "http://c:1"],
            vec![
                "http://127.0.0.1:20101",
                "http://127.0.0.1:20101/",
                "http://c:1",
            ],
            vec!["http://[::1]:20101"],
            vec!["http://c:1", "http://c :1"],
            vec!["http://localhost:7", "http://127.0.0.1:7"],
        ] {
            let e = u.set_peers(&bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad:?}");
            assert_eq!(u.peers(), ring, "{bad:?} changed the ring");
        }
        assert!(u.add_peer("http://localhost:20101").is_err());
        u.add_peer("HTTP://b:1/").unwrap();
        assert_eq!(u.peers(), ring);
        assert!(u.remove_peer("http://LOCALHOST:20101").is_err());
        u.remove_peer("http://B:1/").unwrap();
        assert_eq!(u.peers(), ["http://127.0.0.1:20101"]);
    }

    #[test]
    fn an_invalid_own_url_is_named_by_set_peers() {
        let u = crate::Universe::builder("http://me :1").build();
        let e = u.set_peers(["http://me :1"]).unwrap_err();
        assert!(
            e.message().contains("own URL") && e.message().contains("me :1"),
            "{e}"
        );
    }
}
