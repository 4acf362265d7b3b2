//! Which IP addresses a server-side download may reach: only globally reachable unicast ones.
//!
//! Every range of IANA's IPv4 and IPv6 special-purpose registries is refused (even the few
//! marked globally reachable: none of them serves a result file), and so are multicast, the
//! reserved 240/4 and, for IPv6, everything outside global unicast 2000::/3. Addresses that
//! embed an IPv4 one (v4-mapped, 6to4) are judged by that address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `addr` lies in `net/len` (`len` ≤ 32).
fn in_v4(addr: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(addr) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

/// `addr` lies in `net/len` (`len` ≤ 128).
fn in_v6(addr: Ipv6Addr, net: [u16; 8], len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(addr) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// IPv4 special-purpose ranges (RFC 6890 and its updates), multicast, 240/4 and broadcast.
const V4_REFUSED: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (carrier-grade NAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local (cloud metadata lives here)
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 31, 196, 0], 24), // AS112-v4
    ([192, 52, 193, 0], 24), // AMT
    ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([192, 175, 48, 0], 24), // direct delegation AS112
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, with 255.255.255.255 (broadcast)
];

/// IPv6 special-purpose ranges inside 2000::/3 (all else outside it is refused anyway).
const V6_REFUSED: &[([u16; 8], u32)] = &[
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments: Teredo 2001::/32, ORCHID, benchmarking
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    ([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48), // direct delegation AS112
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation (RFC 9637)
];

/// Whether a download may connect to `ip`.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !V4_REFUSED.iter().any(|(net, len)| in_v4(ip, *net, *len))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // ::ffff:a.b.c.d reaches a.b.c.d itself on a dual-stack socket.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // Outside global unicast: ::/128, ::1, v4-compatible ::/96, 64:ff9b::/96 and 64:ff9b:1::/48
    // (NAT64, which would reach any IPv4 address behind the translator), discard 100::/64,
    // SRv6 5f00::/16, unique local fc00::/7, link-local fe80::/10, site-local fec0::/10 and
    // multicast ff00::/8.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return false;
    }
    if V6_REFUSED.iter().any(|(net, len)| in_v6(ip, *net, *len)) {
        return false;
    }
    // 6to4: 2002:AABB:CCDD::/48 is routed to the IPv4 address AA.BB.CC.DD.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let s = ip.segments();
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per range: an address inside it, refused; and its neighbours just outside, where
    /// they are public, accepted.
    #[test]
    fn every_special_purpose_range_is_refused() {
        let refused = [
            // IPv4
            ("0.0.0.0", "0/8 this network"),
            ("0.255.255.255", "0/8 this network"),
            ("10.0.0.1", "10/8 private"),
            ("100.64.0.1", "100.64/10 shared"),
            ("100.127.255.254", "100.64/10 shared"),
            ("127.0.0.1", "127/8 loopback"),
            ("127.255.0.1", "127/8 loopback"),
            ("169.254.169.254", "169.254/16 link-local"),
            ("172.16.0.1", "172.16/12 private"),
            ("172.31.255.254", "172.16/12 private"),
            ("192.0.0.1", "192.0.0/24 IETF assignments"),
            (
                "192.0.0.170",
                "192.0.0/24 IETF assignments (NAT64 discovery)",
            ),
            ("192.0.2.1", "192.0.2/24 TEST-NET-1"),
            ("192.31.196.1", "192.31.196/24 AS112"),
            ("192.52.193.1", "192.52.193/24 AMT"),
            ("192.88.99.1", "192.88.99/24 6to4 relay"),
            ("192.168.1.1", "192.168/16 private"),
            ("192.175.48.1", "192.175.48/24 AS112"),
            ("198.18.0.1", "198.18/15 benchmarking"),
            ("198.19.255.254", "198.18/15 benchmarking"),
            ("198.51.100.1", "198.51.100/24 TEST-NET-2"),
            ("203.0.113.1", "203.0.113/24 TEST-NET-3"),
            ("224.0.0.1", "224/4 multicast"),
            ("239.255.255.250", "224/4 multicast"),
            ("240.0.0.1", "240/4 reserved"),
            ("255.255.255.254", "240/4 reserved"),
            ("255.255.255.255", "broadcast"),
            // IPv6
            ("::", "::/128 unspecified"),
            ("::1", "::1/128 loopback"),
            ("::ffff:10.0.0.1", "v4-mapped private"),
            ("::ffff:127.0.0.1", "v4-mapped loopback"),
            ("::ffff:169.254.169.254", "v4-mapped link-local"),
            ("::10.0.0.1", "v4-compatible (deprecated)"),
            (
                "::8.8.8.8",
                "v4-compatible (deprecated), even of a public address",
            ),
            ("64:ff9b::a00:1", "64:ff9b::/96 NAT64"),
            ("64:ff9b::808:808", "64:ff9b::/96 NAT64"),
            ("64:ff9b:1::1", "64:ff9b:1::/48 local NAT64"),
            ("100::1", "100::/64 discard"),
            ("2001::1", "2001::/32 Teredo"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::/32 Teredo"),
            ("2001:2::1", "2001:2::/48 benchmarking"),
            ("2001:10::1", "2001:10::/28 ORCHID"),
            ("2001:20::1", "2001:20::/28 ORCHIDv2"),
            ("2001:1ff:ffff::1", "2001::/23 IETF assignments"),
            ("2001:db8::1", "2001:db8::/32 documentation"),
            ("2001:db8:ffff::1", "2001:db8::/32 documentation"),
            ("2002:a00:1::1", "6to4 of 10.0.0.1"),
            ("2002:7f00:1::1", "6to4 of 127.0.0.1"),
            ("2002:a9fe:a9fe::1", "6to4 of 169.254.169.254"),
            ("2002:c0a8:101::1", "6to4 of 192.168.1.1"),
            ("2002::1", "6to4 of 0.0.0.0"),
            ("2620:4f:8000::1", "2620:4f:8000::/48 AS112"),
            ("3fff::1", "3fff::/20 documentation"),
            ("5f00::1", "5f00::/16 SRv6"),
            ("fc00::1", "fc00::/7 unique local"),
            ("fd12:3456::1", "fc00::/7 unique local"),
            ("fe80::1", "fe80::/10 link-local"),
            ("febf::1", "fe80::/10 link-local"),
            ("fec0::1", "fec0::/10 site-local"),
            ("ff02::1", "ff00::/8 multicast"),
            ("ff0e::1", "ff00::/8 multicast"),
            ("4000::1", "outside 2000::/3"),
        ];
        for (ip, range) in refused {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(!is_public_ip(parsed), "{ip} ({range}) must be refused");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.0.3.1",
            "192.167.255.255",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "203.0.114.1",
            "223.255.255.254",
            "::ffff:1.1.1.1",
            "2001:200::1",
            "2001:4860:4860::8888",
            "2001:db9::1",
            "2002:808:808::1",
            "2606:4700::1111",
            "2a00:1450::1",
            "3ffe:ffff::1",
        ];
        for ip in public {
            assert!(is_public_ip(ip.parse().unwrap()), "{ip} must be public");
        }
    }
}
