//! A router solicitation sent from an interface that has no IPv6 address at all.
//!
//! The bundled macvtap and OVS CNIs give a pod's interface no link-local address
//! (addr_gen_mode none: no DAD or MLD frames from a guest's MAC before the guest
//! moves), so the pod's kernel never solicits a router and SLAAC waits for the
//! router's next unsolicited advertisement: 5 to 20 s with dnsmasq in its first
//! minute, whatever its interval. RFC 4861 §6.3.7 lets a host solicit from the
//! unspecified address; the kernel's own sockets need a source address, so the frame
//! is written whole on a packet socket. A router answers such a solicitation with a
//! multicast advertisement (it has no address to answer to), which every host on
//! the link takes.

use std::io;
use std::net::Ipv6Addr;

use cni_kit::netns::NetNs;
use nix::libc;

const ETH_P_IPV6: u16 = 0x86dd;
const ICMPV6: u8 = 58;
const ROUTER_SOLICITATION: u8 = 133;
/// ff02::2, all routers on the link, and its Ethernet group address.
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
const ALL_ROUTERS_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 2];

/// Sends one router solicitation out of `ifname` in `netns`, from `::` to ff02::2.
pub fn router_solicitation(netns: &NetNs, ifname: &str) -> io::Result<()> {
    let netns = netns.try_clone()?;
    let ifname = ifname.to_string();
    // setns only on a thread of our own: never on a tokio worker.
    std::thread::spawn(move || {
        netns.enter_current_thread()?;
        send(&ifname)
    })
    .join()
    .map_err(|_| io::Error::other("the router solicitation's thread panicked"))?
}

fn send(ifname: &str) -> io::Result<()> {
    let name = std::ffi::CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name"))?;
    // SAFETY: a NUL-terminated name that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("no interface {ifname}: {e}"),
        ));
    }
    // SAFETY: a plain socket(2) call; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_IPV6.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_IPV6.to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&ALL_ROUTERS_MAC);
    let packet = packet();
    // SAFETY: the buffer and address outlive the call; lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The IPv6 packet: header from `::` to ff02::2 with hop limit 255 (a receiver drops
/// neighbour discovery that crossed a router), then the solicitation without options
/// (no source link-layer option from the unspecified address, §4.1).
fn packet() -> Vec<u8> {
    let mut icmp = vec![ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    let sum = checksum(&Ipv6Addr::UNSPECIFIED, &ALL_ROUTERS, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut p = Vec::with_capacity(40 + icmp.len());
    p.extend([0x60, 0, 0, 0]);
    p.extend((icmp.len() as u16).to_be_bytes());
    p.extend([ICMPV6, 255]);
    p.extend(Ipv6Addr::UNSPECIFIED.octets());
    p.extend(ALL_ROUTERS.octets());
    p.extend(icmp);
    p
}

/// The ICMPv6 checksum: the one's complement sum over the pseudo-header (source,
/// destination, upper-layer length, next header) and the message.
fn checksum(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u16 {
    let mut words: Vec<u8> = Vec::with_capacity(40 + message.len() + 1);
    words.extend(src.octets());
    words.extend(dst.octets());
    words.extend((message.len() as u32).to_be_bytes());
    words.extend([0, 0, 0, ICMPV6]);
    words.extend(message);
    if words.len() % 2 == 1 {
        words.push(0);
    }
    let mut sum: u32 = words
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packet_is_a_solicitation_to_all_routers_with_a_valid_checksum() {
        let p = packet();
        assert_eq!(p.len(), 48);
        assert_eq!(p[0] >> 4, 6, "IPv6");
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 8, "payload length");
        assert_eq!((p[6], p[7]), (ICMPV6, 255), "ICMPv6, hop limit 255");
        assert_eq!(&p[8..24], &[0; 16], "from the unspecified address");
        assert_eq!(&p[24..40], &ALL_ROUTERS.octets());
        assert_eq!(p[40], ROUTER_SOLICITATION);
        // Summing the message with its checksum in place gives 0 (all ones, inverted).
        assert_eq!(checksum(&Ipv6Addr::UNSPECIFIED, &ALL_ROUTERS, &p[40..]), 0);
    }

    #[test]
    fn the_checksum_matches_one_worked_by_hand() {
        // Pseudo-header words ff02 + 0002 + 0008 (length) + 003a (ICMPv6), message
        // word 8500: 0x18446 folds to 0x8447, whose complement is 0x7bb8.
        let message = [ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            checksum(&Ipv6Addr::UNSPECIFIED, &ALL_ROUTERS, &message),
            0x7bb8
        );
    }
}
