//! Which destinations a browser may reach: the operator's rules, a
//! session's narrowing of them, and by default public unicast addresses
//! only. Judged on the address actually connected to, after resolution,
//! so a name that resolves to loopback is loopback.

use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::domain::egress::{
    Destination, EgressRules, Rule, authority, literal, non_public, unbracketed,
};

/// How long the host's own interface addresses are trusted once read.
const HOST_ADDRESSES_TTL: Duration = Duration::from_secs(2);

/// The server's policy, one for every browser of this node.
pub struct Policy {
    open: bool,
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    /// The ports of browserd's own listeners: never reachable, whatever
    /// the rules say (a page's connection through the proxy would come
    /// from browserd's own process).
    own_ports: RwLock<Vec<u16>>,
    host_addresses: Mutex<Option<(Instant, Vec<IpAddr>)>>,
}

/// What the proxy does with a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse(Refusal),
}

/// Why a destination was refused, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `host:port`, and the address when it was resolved.
    pub destination: String,
    /// The rule or range that refused it.
    pub rule: String,
    /// What would allow it, if anything may.
    pub remedy: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "browserd's egress policy refused {}: {}. {}",
            self.destination, self.rule, self.remedy
        )
    }
}

impl Policy {
    pub fn new(open: bool, allow: Vec<Rule>, deny: Vec<Rule>) -> Self {
        Self {
            open,
            allow,
            deny,
            own_ports: RwLock::new(Vec::new()),
            host_addresses: Mutex::new(None),
        }
    }

    /// `--egress open`: no wall, no policy.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Says which ports browserd itself listens on, once they are bound.
    pub fn set_own_ports(&self, ports: Vec<u16>) {
        *self.own_ports.write().expect("own ports poisoned") = ports;
    }

    /// Judges a connection a browser asked for. With `to.ip` unset, only
    /// what the name decides (a resolved address is judged again).
    pub fn judge(&self, session: &EgressRules, to: &Destination) -> Verdict {
        if let Some(refusal) = self.own_listener(to) {
            return Verdict::Refuse(refusal);
        }
        if let Some(rule) = session.deny.iter().find(|r| r.matches(to)) {
            return refuse(
                to,
                format!("the session's egress.deny rule {rule}"),
                "The session was created with this rule.",
            );
        }
        if !session.allow.is_empty() && !session.allow.iter().any(|r| r.matches(to)) {
            let undecided = to.ip.is_none() && session.allow.iter().any(Rule::is_address);
            if !undecided {
                return refuse(
                    to,
                    "it is not in the session's egress.allow list".into(),
                    "The session was created with an allow list that does not name it.",
                );
            }
        }
        self.judge_server(to)
    }

    /// Judges the connection to an upstream proxy: the server's rules
    /// only (a session names its proxy, it does not narrow it).
    pub fn judge_upstream(&self, to: &Destination) -> Verdict {
        if let Some(refusal) = self.own_listener(to) {
            return Verdict::Refuse(refusal);
        }
        self.judge_server(to)
    }

    fn judge_server(&self, to: &Destination) -> Verdict {
        if let Some(rule) = self.deny.iter().find(|r| r.matches(to)) {
            return refuse(
                to,
                format!("--egress-deny {rule}"),
                "The server's operator denies it.",
            );
        }
        if self.open || self.allow.iter().any(|r| r.matches(to)) {
            return Verdict::Allow;
        }
        let Some(ip) = to.ip else {
            return Verdict::Allow;
        };
        let allow = format!(
            "Start browserd with --egress-allow {} to let every session reach it.",
            authority(&ip.to_string(), to.port)
        );
        if let Some(range) = non_public(ip) {
            return refuse(to, format!("the address is {range}"), &allow);
        }
        if self.is_host_address(ip) {
            return refuse(to, "the address is one of browserd's host".into(), &allow);
        }
        Verdict::Allow
    }

    fn own_listener(&self, to: &Destination) -> Option<Refusal> {
        let ports = self.own_ports.read().expect("own ports poisoned");
        if !ports.contains(&to.port) {
            return None;
        }
        let local = [literal(to.host), to.ip].into_iter().flatten().any(|ip| {
            let ip = ip.to_canonical();
            ip.is_loopback() || ip.is_unspecified() || self.is_host_address(ip)
        });
        local.then(|| {
            refusal(
                to,
                "it is browserd's own listener".into(),
                "No rule opens it: a page never reaches browserd itself.",
            )
        })
    }

    fn is_host_address(&self, ip: IpAddr) -> bool {
        let mut cached = self.host_addresses.lock().expect("host addresses poisoned");
        let fresh = cached
            .as_ref()
            .is_some_and(|(read, _)| read.elapsed() < HOST_ADDRESSES_TTL);
        if !fresh {
            *cached = Some((Instant::now(), host_addresses()));
        }
        let ip = ip.to_canonical();
        cached
            .as_ref()
            .is_some_and(|(_, addresses)| addresses.contains(&ip))
    }
}

fn refuse(to: &Destination, rule: String, remedy: &str) -> Verdict {
    Verdict::Refuse(refusal(to, rule, remedy))
}

fn refusal(to: &Destination, rule: String, remedy: &str) -> Refusal {
    let mut destination = authority(to.host, to.port);
    if let Some(ip) = to.ip
        && ip.to_string() != unbracketed(to.host)
    {
        destination.push_str(&format!(" ({ip})"));
    }
    Refusal {
        destination,
        rule,
        remedy: remedy.to_owned(),
    }
}

/// The addresses of this host's interfaces (its network namespace's).
fn host_addresses() -> Vec<IpAddr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut addresses = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let entry = unsafe { &*cursor };
        if !entry.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr of its family.
            let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                addresses.push(IpAddr::from(
                    u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                ));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in6) };
                addresses.push(IpAddr::from(sin6.sin6_addr.s6_addr));
            }
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<Rule> {
        list.iter()
            .map(|r| Rule::parse(r).expect("a rule"))
            .collect()
    }

    fn at<'a>(host: &'a str, port: u16, ip: &str) -> Destination<'a> {
        Destination {
            host,
            port,
            ip: Some(ip.parse().expect("an address")),
        }
    }

    fn refused(verdict: Verdict) -> Refusal {
        match verdict {
            Verdict::Refuse(refusal) => refusal,
            Verdict::Allow => panic!("allowed"),
        }
    }

    #[test]
    fn by_default_only_public_addresses_pass_and_a_refusal_names_the_flag() {
        let policy = Policy::new(false, vec![], vec![]);
        let none = EgressRules::default();
        assert_eq!(
            policy.judge(&none, &at("example.com", 443, "93.184.215.14")),
            Verdict::Allow
        );
        let refusal = refused(policy.judge(&none, &at("rebind.test", 80, "127.0.0.1")));
        assert_eq!(refusal.destination, "rebind.test:80 (127.0.0.1)");
        assert!(refusal.rule.contains("loopback"), "{refusal}");
        assert!(refusal.remedy.contains("--egress-allow 127.0.0.1:80"));
        let metadata = refused(policy.judge(&none, &at("169.254.169.254", 80, "169.254.169.254")));
        assert_eq!(metadata.destination, "169.254.169.254:80");
        assert!(metadata.rule.contains("link-local"));
        let v6 = refused(policy.judge(&none, &at("[::1]", 8080, "::1")));
        assert!(v6.remedy.contains("--egress-allow [::1]:8080"), "{v6}");
        // A name alone is not refused: its addresses are judged.
        let name = Destination {
            host: "localhost",
            port: 80,
            ip: None,
        };
        assert_eq!(policy.judge(&none, &name), Verdict::Allow);
    }

    #[test]
    fn the_operator_allows_and_denies_and_a_session_only_narrows() {
        let policy = Policy::new(
            false,
            rules(&["127.0.0.1:3000", "localhost:3000", "10.0.0.0/8"]),
            rules(&["10.9.0.0/16", "evil.example"]),
        );
        let none = EgressRules::default();
        assert_eq!(
            policy.judge(&none, &at("127.0.0.1", 3000, "127.0.0.1")),
            Verdict::Allow
        );
        assert_eq!(
            policy.judge(&none, &at("localhost", 3000, "::1")),
            Verdict::Allow
        );
        assert!(matches!(
            policy.judge(&none, &at("127.0.0.1", 3001, "127.0.0.1")),
            Verdict::Refuse(_)
        ));
        let denied = refused(policy.judge(&none, &at("x", 80, "10.9.1.1")));
        assert_eq!(denied.rule, "--egress-deny 10.9.0.0/16");
        assert!(matches!(
            policy.judge(&none, &at("a.evil.example", 443, "1.2.3.4")),
            Verdict::Refuse(_)
        ));

        let narrow = EgressRules {
            allow: rules(&["127.0.0.1"]),
            deny: rules(&["tracker.example"]),
        };
        assert_eq!(
            policy.judge(&narrow, &at("127.0.0.1", 3000, "127.0.0.1")),
            Verdict::Allow
        );
        let outside = refused(policy.judge(&narrow, &at("localhost", 3000, "::1")));
        assert!(outside.rule.contains("egress.allow"), "{outside}");
        // The session's allow list opens nothing the server refuses.
        assert!(matches!(
            policy.judge(&narrow, &at("127.0.0.1", 5432, "127.0.0.1")),
            Verdict::Refuse(_)
        ));
        let tracker = refused(policy.judge(&narrow, &at("tracker.example", 443, "1.2.3.4")));
        assert!(tracker.rule.contains("egress.deny"));
        // An address rule waits for the address.
        let by_name = Destination {
            host: "somewhere.example",
            port: 443,
            ip: None,
        };
        assert_eq!(policy.judge(&narrow, &by_name), Verdict::Allow);
    }

    #[test]
    fn browserd_s_own_listeners_are_refused_even_when_open_or_allowed() {
        let policy = Policy::new(true, rules(&["127.0.0.1"]), vec![]);
        policy.set_own_ports(vec![50051, 9222]);
        let none = EgressRules::default();
        for (host, ip) in [
            ("127.0.0.1", "127.0.0.1"),
            ("localhost", "::1"),
            ("0.0.0.0", "0.0.0.0"),
        ] {
            let refusal = refused(policy.judge(&none, &at(host, 9222, ip)));
            assert!(refusal.rule.contains("browserd's own"), "{refusal}");
        }
        assert_eq!(
            policy.judge(&none, &at("127.0.0.1", 3000, "127.0.0.1")),
            Verdict::Allow
        );
        assert!(matches!(
            policy.judge_upstream(&at("127.0.0.1", 50051, "127.0.0.1")),
            Verdict::Refuse(_)
        ));
    }
}
