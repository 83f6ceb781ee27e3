//! Refusing a penalized address in the kernel.
//!
//! A client closed for flooding inputs is refused for a while (`input_flood_penalty`). A
//! flooder that reconnects at once, forever, still made the front-end accept, answer and
//! close thousands of connections a second, and the machine's other clients paid for
//! those wake-ups. So the listening sockets carry a classic BPF socket filter that drops
//! every TCP segment from the penalized IPv4 addresses, SYNs included: the flooder's
//! connection attempts go unanswered (its kernel retransmits the SYN after 1 s, then 3 s,
//! ...) and cost the front-end nothing until the penalty ends. IPv6 addresses, and IPv4
//! addresses past [`MAX_FILTERED`], are refused in user space as before (accepted, told
//! `Error{Overloaded}`, closed).
//!
//! The filter is the listener's: connections accepted while it is attached inherit it (the
//! kernel shares it with them), so it is kept short, and connections accepted earlier
//! never see it. A penalty never cuts a connection already open.

use std::net::Ipv4Addr;

/// Penalized IPv4 addresses the kernel filter holds at most (two instructions each, run
/// for every segment of a connection accepted while the filter is attached).
pub(crate) const MAX_FILTERED: usize = 64;

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20)
const BPF_LD_B_ABS: u16 = 0x30; // BPF_LD (0x00) | BPF_B (0x10) | BPF_ABS (0x20)
const BPF_ALU_AND_K: u16 = 0x54; // BPF_ALU (0x04) | BPF_AND (0x50) | BPF_K (0x00)
const BPF_JMP_JEQ_K: u16 = 0x15; // BPF_JMP (0x05) | BPF_JEQ (0x10) | BPF_K (0x00)
const BPF_RET_K: u16 = 0x06; // BPF_RET (0x06) | BPF_K (0x00)
/// Offsets from this base address the packet's network (IP) header, wherever the
/// socket layer's data pointer is (`SKF_NET_OFF`).
const SKF_NET_OFF: i32 = -0x10_0000;

/// One classic BPF instruction.
fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter dropping TCP segments whose IPv4 source is one of `addrs` (at most
/// [`MAX_FILTERED`] of them are used) and keeping everything else (IPv6 included).
pub(crate) fn program(addrs: &[Ipv4Addr]) -> Vec<libc::sock_filter> {
    let addrs = addrs.get(..MAX_FILTERED).unwrap_or(addrs);
    let keep = op(BPF_RET_K, 0, 0, u32::MAX);
    let drop = op(BPF_RET_K, 0, 0, 0);
    let mut filter = Vec::with_capacity(5 + 2 * addrs.len());
    // IPv4 only: the version nibble of the network header's first byte.
    filter.push(op(BPF_LD_B_ABS, 0, 0, SKF_NET_OFF as u32));
    filter.push(op(BPF_ALU_AND_K, 0, 0, 0xf0));
    filter.push(op(BPF_JMP_JEQ_K, 1, 0, 0x40));
    filter.push(keep);
    // The source address, at byte 12 of the IPv4 header.
    filter.push(op(BPF_LD_W_ABS, 0, 0, (SKF_NET_OFF + 12) as u32));
    for addr in addrs {
        // Equal: fall through to the drop; else skip it.
        filter.push(op(BPF_JMP_JEQ_K, 0, 1, u32::from(*addr)));
        filter.push(drop);
    }
    filter.push(keep);
    filter
}

/// Puts the filter for `addrs` on `listener` (or takes any filter off when `addrs` is
/// empty).
pub(crate) fn apply(listener: &std::net::TcpListener, addrs: &[Ipv4Addr]) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(listener);
    if addrs.is_empty() {
        return match socket.detach_filter() {
            // No filter attached: nothing to take off.
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        };
    }
    socket.attach_filter(&program(addrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    #[test]
    fn the_program_checks_the_version_then_each_address() {
        let filter = program(&[Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(10, 1, 2, 3)]);
        assert_eq!(filter.len(), 5 + 2 * 2 + 1);
        assert_eq!(filter[5].k, 0x7f00_0002);
        assert_eq!((filter[5].jt, filter[5].jf), (0, 1));
        assert_eq!((filter[6].code, filter[6].k), (BPF_RET_K, 0));
        assert_eq!(filter[7].k, 0x0a01_0203);
        assert_eq!(filter.last().map(|i| i.k), Some(u32::MAX));
        let many: Vec<Ipv4Addr> = (0..1000u32).map(Ipv4Addr::from).collect();
        assert_eq!(program(&many).len(), 5 + 2 * MAX_FILTERED + 1);
    }

    /// Connects from `source` to `to`, giving up after `wait`.
    fn connects(source: Ipv4Addr, to: SocketAddr, wait: Duration) -> bool {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        socket
            .bind(&SocketAddr::from((source, 0)).into())
            .expect("bind a loopback source");
        socket.connect_timeout(&to.into(), wait).is_ok()
    }

    #[test]
    fn a_filtered_address_cannot_even_connect_and_others_can() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        let flooder = Ipv4Addr::new(127, 0, 0, 2);
        let other = Ipv4Addr::new(127, 0, 0, 3);
        apply(&listener, &[flooder]).unwrap();
        // Its SYN is dropped: no answer at all, not even a refusal.
        assert!(!connects(flooder, to, Duration::from_millis(300)));
        assert!(connects(other, to, Duration::from_secs(5)));
        // The penalty ends: it connects again.
        apply(&listener, &[]).unwrap();
        assert!(connects(flooder, to, Duration::from_secs(5)));
        // Taking off a filter that is not there is not an error.
        apply(&listener, &[]).unwrap();
        drop(TcpStream::connect(to).unwrap());
    }
}
