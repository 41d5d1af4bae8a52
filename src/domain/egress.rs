//! Where a session's browser may open connections: the rules an operator
//! (`--egress-allow`, `--egress-deny`) or a session
//! (`CreateSessionRequest.egress`) writes, the address classes that are
//! refused unless a rule allows them, and what a session's traffic cost.
//! Values only; the egress proxy applies them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// Most rules a session may give, each list.
pub const MAX_SESSION_RULES: usize = 64;
/// Longest rule text: a domain name's limit and a port.
pub const MAX_RULE_BYTES: usize = 260;

/// A destination: an address range or a domain, with or without a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    target: Target,
    port: Option<u16>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Net(IpNet),
    /// Lower case, no trailing dot; matches itself and its subdomains.
    Domain(String),
}

/// What a connection is for: the host the browser asked for (a name or
/// an address literal, as written), its port, and, once resolved, the
/// address about to be connected to.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub host: &'a str,
    pub port: u16,
    pub ip: Option<IpAddr>,
}

impl Rule {
    /// `10.0.0.0/8`, `127.0.0.1:3000`, `::1`, `[fd00::/8]:443`,
    /// `example.com`, `*.example.com:8443`. A domain matches itself and
    /// every name under it (`*.` says the same, for readers who expect
    /// it).
    pub fn parse(text: &str) -> Result<Rule, &'static str> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty");
        }
        if text.len() > MAX_RULE_BYTES {
            return Err("is longer than 260 bytes");
        }
        let (host, port) = split_port(text)?;
        let target = match parse_net(host) {
            Some(net) => Target::Net(net),
            None => Target::Domain(parse_domain(host)?),
        };
        Ok(Rule {
            target,
            port,
            text: text.to_owned(),
        })
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `to` is this rule's: by its name (a domain rule, or an
    /// address rule and a literal host) or by the address connected to.
    pub fn matches(&self, to: &Destination) -> bool {
        if self.port.is_some_and(|port| port != to.port) {
            return false;
        }
        let host = normalise_host(to.host);
        match &self.target {
            Target::Domain(domain) => {
                host == *domain
                    || host
                        .strip_suffix(domain.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }
            Target::Net(net) => [literal(&host), to.ip]
                .into_iter()
                .flatten()
                .any(|ip| net.contains(&canonical(ip))),
        }
    }

    /// Whether the rule names addresses rather than domains: such a rule
    /// can only be judged once a name is resolved.
    pub fn is_address(&self) -> bool {
        matches!(self.target, Target::Net(_))
    }
}

impl FromStr for Rule {
    type Err = &'static str;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Rule::parse(text)
    }
}

/// Stored and sent as written, and parsed again when read.
impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Rule::parse(&text).map_err(|why| serde::de::Error::custom(format!("{text:?} {why}")))
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A session's own narrowing of the server's policy: it can only take
/// away. `allow` empty: whatever the server allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EgressRules {
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
}

impl EgressRules {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// What a session's browser sent and received through the egress proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EgressUsage {
    /// Bytes from the browser to destinations (request heads, bodies,
    /// TLS records), as the proxy forwarded them.
    pub bytes_sent: u64,
    /// Bytes from destinations to the browser.
    pub bytes_received: u64,
    /// Connections and plain-HTTP requests the proxy carried.
    pub requests: u64,
    /// Connections and requests the policy refused.
    pub refused: u64,
}

/// Why an address is not a public unicast one, naming its range; `None`
/// for a public address. IPv6 forms that carry an IPv4 address (mapped,
/// compatible, NAT64, 6to4) are judged by that address.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "this network (0.0.0.0/8, the unspecified address)",
        (127, ..) => "loopback (127.0.0.0/8)",
        (10, ..) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (100, 64..=127, _) => "shared address space, CGNAT (100.64.0.0/10)",
        (169, 254, _) => "link-local (169.254.0.0/16, where cloud metadata lives)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, ..) => "multicast (224.0.0.0/4)",
        (240..=255, ..) => "reserved and broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return non_public_v4(v4);
    }
    let s = ip.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified (::)",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback (::1)",
        [0x64, 0xff9b, 1, ..] => "local-use NAT64 (64:ff9b:1::/48)",
        [0x100, 0, 0, 0, ..] => "discard (100::/64)",
        _ if s[0] & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        _ if s[0] & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        _ if s[0] & 0xfe00 == 0xfc00 => "unique local, private (fc00::/7)",
        _ if s[0] & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        [0x2001, 0xdb8, ..] => "documentation (2001:db8::/32)",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 one stands for: mapped (`::ffff:a.b.c.d`),
/// compatible (`::a.b.c.d`, deprecated but still routed by some stacks),
/// NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => Some(low),
        // `::` and `::1` are themselves, not 0.0.0.0 and 0.0.0.1.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// An address as the rules compare it: a mapped IPv6 address as its IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// A host without the brackets of an IPv6 literal.
pub fn unbracketed(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The address a host is, when it is an address literal.
pub fn literal(host: &str) -> Option<IpAddr> {
    unbracketed(host).parse::<IpAddr>().ok().map(canonical)
}

/// `host:port`, with an IPv6 literal in brackets.
pub fn authority(host: &str, port: u16) -> String {
    match unbracketed(host) {
        v6 if v6.contains(':') => format!("[{v6}]:{port}"),
        host => format!("{host}:{port}"),
    }
}

/// A host as the browser sent it, compared in lower case, without the
/// brackets of an IPv6 literal or a trailing dot.
fn normalise_host(host: &str) -> String {
    unbracketed(host).trim_end_matches('.').to_ascii_lowercase()
}

fn split_port(text: &str) -> Result<(&str, Option<u16>), &'static str> {
    let parse_port = |port: &str| match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(Some(port)),
        _ => Err("has a port that is not 1 to 65535"),
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("opens a [ for an IPv6 address and never closes it")?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, parse_port(port)?)),
                None => Err("has something after ] that is not :port"),
            },
        };
    }
    match text.matches(':').count() {
        0 => Ok((text, None)),
        // `host:port`; more colons are an IPv6 address without a port.
        1 => {
            let (host, port) = text.split_once(':').expect("one colon");
            Ok((host, parse_port(port)?))
        }
        _ => Ok((text, None)),
    }
}

fn parse_net(host: &str) -> Option<IpNet> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(IpNet::from(canonical(ip)));
    }
    let net = host.parse::<IpNet>().ok()?;
    Some(net.trunc())
}

fn parse_domain(host: &str) -> Result<String, &'static str> {
    let domain = host.strip_prefix("*.").unwrap_or(host);
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let labels_ok = !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !labels_ok {
        return Err("must be an address, a CIDR range or a domain name, with an optional :port");
    }
    Ok(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest<'a>(host: &'a str, port: u16, ip: Option<&str>) -> Destination<'a> {
        Destination {
            host,
            port,
            ip: ip.map(|ip| ip.parse().expect("an address")),
        }
    }

    #[test]
    fn every_range_the_default_refuses_is_named_and_public_addresses_pass() {
        let refused = [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "224.0.0.251",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            // IPv4 inside IPv6: mapped, compatible, NAT64, 6to4.
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "64:ff9b:1::1",
        ];
        for ip in refused {
            let ip: IpAddr = ip.parse().expect("an address");
            assert!(non_public(ip).is_some(), "{ip} must be refused");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ];
        for ip in public {
            let ip: IpAddr = ip.parse().expect("an address");
            assert_eq!(non_public(ip), None, "{ip} is public");
        }
    }

    #[test]
    fn rules_match_by_address_range_domain_and_port() {
        let rule = Rule::parse("127.0.0.1:3000").expect("a rule");
        assert!(rule.matches(&dest("127.0.0.1", 3000, None)));
        assert!(rule.matches(&dest("localhost", 3000, Some("127.0.0.1"))));
        assert!(rule.matches(&dest("x", 3000, Some("::ffff:127.0.0.1"))));
        assert!(!rule.matches(&dest("127.0.0.1", 3001, None)));
        assert!(!rule.matches(&dest("127.0.0.2", 3000, None)));

        let net = Rule::parse("10.0.0.0/8").expect("a rule");
        assert!(net.is_address());
        assert!(net.matches(&dest("10.9.8.7", 80, None)));
        assert!(net.matches(&dest("intranet", 443, Some("10.1.1.1"))));
        assert!(!net.matches(&dest("intranet", 443, None)));

        let v6 = Rule::parse("[::1]:8080").expect("a rule");
        assert!(v6.matches(&dest("[::1]", 8080, None)));
        assert!(
            Rule::parse("fd00::/8")
                .expect("a rule")
                .matches(&dest("x", 1, Some("fd12::1")))
        );
        assert!(
            Rule::parse("::1")
                .expect("a rule")
                .matches(&dest("[::1]", 1, None))
        );

        let domain = Rule::parse("Example.com").expect("a rule");
        assert!(!domain.is_address());
        assert!(domain.matches(&dest("example.com", 443, None)));
        assert!(domain.matches(&dest("www.EXAMPLE.com.", 80, None)));
        assert!(!domain.matches(&dest("badexample.com", 80, None)));
        assert!(!domain.matches(&dest("example.com.evil", 80, None)));
        let star = Rule::parse("*.example.com:8443").expect("a rule");
        assert!(star.matches(&dest("a.example.com", 8443, None)));
        assert!(!star.matches(&dest("a.example.com", 443, None)));
    }

    #[test]
    fn malformed_rules_say_what_is_wrong() {
        for bad in [
            "",
            "   ",
            "127.0.0.1:0",
            "127.0.0.1:70000",
            "host:port",
            "[::1",
            "[::1]x",
            "exa mple.com",
            "a..b",
            "*",
            "*.*.com",
            "http://example.com",
            "10.0.0.0/33",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(Rule::parse(&"a".repeat(300)).is_err());
    }
}
