//! Server-reflexive address discovery: a STUN binding request (RFC 8489) and its response.
//!
//! Only what a client needs to learn its public address from the STUN servers in LiveKit's join
//! response: build a request, recognise the answer to it, read `XOR-MAPPED-ADDRESS` (or the old
//! `MAPPED-ADDRESS`). Responses come from the network, so the parser takes any bytes and never
//! panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const HEADER_LEN: usize = 20;

/// A STUN transaction id.
pub type TransactionId = [u8; 12];

/// A binding request with a fresh random transaction id.
pub fn binding_request() -> (TransactionId, Vec<u8>) {
    let mut id = [0u8; 12];
    id.iter_mut().for_each(|b| *b = fastrand::u8(..));
    let mut packet = Vec::with_capacity(HEADER_LEN);
    packet.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    packet.extend_from_slice(&0u16.to_be_bytes());
    packet.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    packet.extend_from_slice(&id);
    (id, packet)
}

/// Whether a datagram looks like STUN at all (RFC 7983 demultiplexing plus the magic cookie).
pub fn is_stun(packet: &[u8]) -> bool {
    packet.len() >= HEADER_LEN && packet[0] < 4 && packet[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// Reads a binding success response: its transaction id and the mapped address. `None` for
/// anything else (other message types, truncated or malformed attributes, no address).
pub fn parse_binding_response(packet: &[u8]) -> Option<(TransactionId, SocketAddr)> {
    if !is_stun(packet) {
        return None;
    }
    let kind = u16::from_be_bytes([packet[0], packet[1]]);
    let length = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if kind != BINDING_SUCCESS || packet.len() < HEADER_LEN + length {
        return None;
    }
    let id: TransactionId = packet[8..20].try_into().ok()?;
    let mut attributes = &packet[HEADER_LEN..HEADER_LEN + length];
    let mut plain = None;
    while attributes.len() >= 4 {
        let attr_type = u16::from_be_bytes([attributes[0], attributes[1]]);
        let attr_len = usize::from(u16::from_be_bytes([attributes[2], attributes[3]]));
        let value = attributes.get(4..4 + attr_len)?;
        match attr_type {
            ATTR_XOR_MAPPED_ADDRESS => return Some((id, read_address(value, Some(&id))?)),
            ATTR_MAPPED_ADDRESS => plain = read_address(value, None),
            _ => {}
        }
        // Attributes are padded to 4 bytes.
        let padded = (4 + attr_len).div_ceil(4) * 4;
        attributes = attributes.get(padded..).unwrap_or(&[]);
    }
    plain.map(|address| (id, address))
}

/// Reads a (XOR-)MAPPED-ADDRESS value; `xor` carries the transaction id for the XOR form.
fn read_address(value: &[u8], xor: Option<&TransactionId>) -> Option<SocketAddr> {
    let family = *value.get(1)?;
    let mut port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]);
    let cookie = MAGIC_COOKIE.to_be_bytes();
    if xor.is_some() {
        port ^= u16::from_be_bytes([cookie[0], cookie[1]]);
    }
    let ip = match family {
        0x01 => {
            let mut octets: [u8; 4] = value.get(4..8)?.try_into().ok()?;
            if xor.is_some() {
                octets.iter_mut().zip(cookie).for_each(|(o, c)| *o ^= c);
            }
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        0x02 => {
            let mut octets: [u8; 16] = value.get(4..20)?.try_into().ok()?;
            if let Some(id) = xor {
                let mask = cookie.iter().chain(id.iter());
                octets.iter_mut().zip(mask).for_each(|(o, m)| *o ^= m);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// A binding success response as a STUN server writes it (tests only).
#[cfg(test)]
pub(crate) fn binding_success(id: &TransactionId, address: SocketAddr, xor: bool) -> Vec<u8> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut value = vec![0, if address.is_ipv4() { 1 } else { 2 }];
    let mut port = address.port();
    if xor {
        port ^= u16::from_be_bytes([cookie[0], cookie[1]]);
    }
    value.extend_from_slice(&port.to_be_bytes());
    let mut ip = match address.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    if xor {
        let mask: Vec<u8> = cookie.iter().chain(id.iter()).copied().collect();
        ip.iter_mut().zip(mask).for_each(|(o, m)| *o ^= m);
    }
    value.extend_from_slice(&ip);
    // An unknown attribute with padding first, then the address.
    let mut attributes = vec![0x80, 0x22, 0, 3, b'a', b'b', b'c', 0];
    let attr = if xor { ATTR_XOR_MAPPED_ADDRESS } else { ATTR_MAPPED_ADDRESS };
    attributes.extend_from_slice(&attr.to_be_bytes());
    attributes.extend_from_slice(&(value.len() as u16).to_be_bytes());
    attributes.extend_from_slice(&value);
    let mut packet = BINDING_SUCCESS.to_be_bytes().to_vec();
    packet.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
    packet.extend_from_slice(&cookie);
    packet.extend_from_slice(id);
    packet.extend_from_slice(&attributes);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_a_binding_request_with_the_cookie() {
        let (id, packet) = binding_request();
        assert_eq!(packet.len(), 20);
        assert!(is_stun(&packet));
        assert_eq!(&packet[8..], &id);
        assert_eq!(parse_binding_response(&packet), None, "a request is not a response");
    }

    #[test]
    fn reads_xor_and_plain_addresses_v4_and_v6() {
        let (id, _) = binding_request();
        for address in ["203.0.113.7:40123", "[2001:db8::7]:3478"] {
            let address: SocketAddr = address.parse().unwrap();
            for xor in [true, false] {
                assert_eq!(
                    parse_binding_response(&binding_success(&id, address, xor)),
                    Some((id, address))
                );
            }
        }
    }

    #[test]
    fn truncations_never_panic() {
        let (id, _) = binding_request();
        let packet = binding_success(&id, "198.51.100.1:1".parse().unwrap(), true);
        for len in 0..packet.len() {
            let _ = parse_binding_response(&packet[..len]);
        }
        // A length field that claims more than there is.
        let mut long = packet.clone();
        long[3] = 0xff;
        assert_eq!(parse_binding_response(&long), None);
    }

    #[test]
    fn rtp_and_dtls_are_not_stun() {
        assert!(!is_stun(&[0x80; 40]));
        assert!(!is_stun(&[22; 40]));
    }
}
