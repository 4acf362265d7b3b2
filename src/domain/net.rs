//! Networks and the client address of a request: CIDR lists (`ipnet`), and `X-Forwarded-For`
//! believed only as far as our own proxies (`TRUSTED_PROXIES`) wrote it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// An IP network (`185.71.76.0/27`, `2a02:5180::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(IpNet);

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let net = if s.contains('/') {
            s.parse::<IpNet>()
                .map_err(|_| format!("{s:?} is not a network (address/prefix length)"))?
        } else {
            IpNet::from(
                s.parse::<IpAddr>()
                    .map_err(|_| format!("{s:?} is not an address or network"))?,
            )
        };
        Ok(Self(net))
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Network {
    /// Whether `ip` is inside (an IPv4 address written as IPv6 counts as the IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

/// Parses a comma-separated list of networks.
pub fn parse_networks(list: &str) -> Result<Vec<Network>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Network::from_str)
        .collect()
}

/// An IPv4 address written as IPv6 (`::ffff:1.2.3.4`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The address a request came from. A TCP peer outside `trusted` (our proxies) is the client,
/// whatever `X-Forwarded-For` says. From a trusted peer, the header's entries are read from the
/// right (each proxy appends the address it saw), skipping our own proxies: the first address
/// that is not one of them is the client; entries to its left were written by the client and
/// prove nothing. An unreadable entry there gives `None` (refuse); when every entry is one of
/// ours, the left-most is the client (and the peer, without a header).
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted: &[Network],
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    for entry in forwarded_for
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .rev()
    {
        client = canonical(entry.parse::<IpAddr>().ok()?);
        if !is_trusted(client) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::payments::YOOKASSA_NETWORKS;

    #[test]
    fn networks_match_addresses() {
        let nets = parse_networks(YOOKASSA_NETWORKS).unwrap();
        let inside = |ip: &str| nets.iter().any(|n| n.contains(ip.parse().unwrap()));
        assert!(inside("185.71.76.0"));
        assert!(inside("185.71.76.31"));
        assert!(!inside("185.71.76.32"));
        assert!(inside("77.75.156.11"));
        assert!(!inside("77.75.156.12"));
        assert!(inside("77.75.154.200"));
        assert!(inside("2a02:5180:0:1509::1"));
        assert!(!inside("2a02:5181::1"));
        assert!(inside("::ffff:185.71.77.5"));
        assert!(!inside("127.0.0.1"));
        let any: Network = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("8.8.8.8".parse().unwrap()));
        for bad in ["185.71.76.0/33", "nope", "1.2.3.4/x", "::/129", "10.0.0.0/"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.1.2.3/8".parse::<Network>().unwrap().to_string(),
            "10.1.2.3/8"
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_our_proxies() {
        let ours = parse_networks("10.0.0.0/8, ::1/128").unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // A peer that is not one of our proxies is the client; its header proves nothing.
        let outsider = ip("198.51.100.7");
        assert_eq!(client_ip(outsider, &["185.71.76.1"], &ours), outsider);
        assert_eq!(client_ip(outsider, &["185.71.76.1"], &[]), outsider);
        // Through our proxy: the right-most entry that is not ours; a forged one to its left
        // does not count.
        let proxy = ip("10.0.0.2");
        assert_eq!(
            client_ip(proxy, &["185.71.76.1, 203.0.113.9"], &ours),
            ip("203.0.113.9")
        );
        // Two of our proxies, the header split over two lines.
        assert_eq!(
            client_ip(proxy, &["1.1.1.1, 185.71.76.1", "10.0.0.7"], &ours),
            ip("185.71.76.1")
        );
        assert_eq!(
            client_ip(ip("::1"), &["::ffff:203.0.113.9"], &ours),
            ip("203.0.113.9")
        );
        // Nothing but our own addresses: the left-most; no header: the peer.
        assert_eq!(
            client_ip(proxy, &["10.9.9.9, 10.0.0.7"], &ours),
            ip("10.9.9.9")
        );
        assert_eq!(client_ip(proxy, &[], &ours), proxy);
        // Garbage where the client should be: refused; garbage left of it: ignored.
        assert_eq!(client_ip(proxy, &["unknown"], &ours), None);
        assert_eq!(
            client_ip(proxy, &["unknown, 203.0.113.9"], &ours),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(None, &[], &ours), None);
    }
}
