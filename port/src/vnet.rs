//! Frames with a virtio-net header: the fast mode between vBET's own
//! processes.
//!
//! A TAP opened with `IFF_VNET_HDR` and TCP segmentation offload hands the
//! guest's TCP segments over as they left its stack — up to 64 KiB, with
//! the checksum left for "the device" to complete — each preceded by a
//! 10-byte `struct virtio_net_hdr` (in host byte order, the legacy layout
//! the TAP uses by default). Between two of our processes such a
//! *packet* (header + frame) travels as one datagram. A plain version-3
//! peer must never see one: [`for_each_plain`] turns a packet into the
//! ordinary frames a real wire would carry (checksums completed, GSO TCP
//! segmented to `gso_size`), as the kernel's own software GSO would.

use crate::frame::{ETHERTYPE_VLAN, HEADER_LEN as ETH_LEN};

/// Size of the virtio-net header before each frame (without
/// `num_buffers`).
pub const HEADER_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start +
/// csum_offset` covers from `csum_start` to the end and is not done yet
/// (the field holds the pseudo-header sum).
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already checked.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO; never enabled on our TAPs).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN`: the segment may carry CWR (only the first
/// of its pieces keeps it).
pub const GSO_ECN: u8 = 0x80;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const PROTO_TCP: u8 = 6;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// A `struct virtio_net_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHeader {
    /// `F_*` bits.
    pub flags: u8,
    /// `GSO_*` kind, with [`GSO_ECN`] possibly or-ed in.
    pub gso_type: u8,
    /// Length of the headers (Ethernet to TCP) of a GSO packet.
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO packet (the MSS).
    pub gso_size: u16,
    /// Where the checksummed range starts (the L4 header), from the
    /// Ethernet header on.
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHeader {
    /// The header of a frame that needs nothing done.
    pub const PLAIN: VnetHeader = VnetHeader {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads the header at the start of `packet` (None if too short).
    pub fn parse(packet: &[u8]) -> Option<VnetHeader> {
        let b = packet.get(..HEADER_LEN)?;
        let word = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHeader {
            flags: b[0],
            gso_type: b[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
        })
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// True when the frame behind it is an ordinary frame as it would be
    /// on a wire: no checksum to complete, no segmentation.
    pub fn is_plain(&self) -> bool {
        self.flags & F_NEEDS_CSUM == 0 && self.gso_type == GSO_NONE
    }

    /// The same header for the frame once `delta` bytes (an 802.1Q tag:
    /// ±4) are inserted or removed before its IP header.
    pub fn shifted(&self, delta: i32) -> VnetHeader {
        let shift = |v: u16| {
            if v == 0 {
                0
            } else {
                (i32::from(v) + delta).clamp(0, i32::from(u16::MAX)) as u16
            }
        };
        VnetHeader {
            hdr_len: shift(self.hdr_len),
            csum_start: if self.flags & F_NEEDS_CSUM != 0 {
                shift(self.csum_start)
            } else {
                self.csum_start
            },
            ..*self
        }
    }
}

/// Writes the header into the first [`HEADER_LEN`] bytes of `packet`.
pub fn write_header(packet: &mut [u8], header: &VnetHeader) {
    packet[..HEADER_LEN].copy_from_slice(&header.encode());
}

/// Why a packet cannot be turned into plain frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// Shorter than a virtio-net header and an Ethernet header.
    #[error("packet of {0} bytes is too short for a virtio-net and an Ethernet header")]
    Short(usize),
    /// The checksum position lies outside the frame.
    #[error("checksum at {start}+{offset} lies outside a frame of {len} bytes")]
    BadChecksumPosition {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// The frame's length.
        len: usize,
    },
    /// A GSO kind we do not segment (UDP fragmentation, USO, unknown).
    #[error("GSO type {0:#x} is not segmented (only TCP over IPv4 and IPv6)")]
    UnsupportedGso(u8),
    /// The frame's headers do not hold what the GSO kind says.
    #[error("GSO frame has no {0} header where expected")]
    BadHeaders(&'static str),
}

/// The ones' complement sum of `bytes` as 16-bit big-endian words (an odd
/// last byte padded with zero), added to `initial`, not yet folded.
pub fn checksum_add(initial: u64, bytes: &[u8]) -> u64 {
    let mut sum = initial;
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    sum + u64::from(u32::from_be_bytes(tail))
}

/// Folds a sum from [`checksum_add`] to 16 bits (not complemented).
pub fn checksum_fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `bytes` (RFC 1071).
pub fn checksum(bytes: &[u8]) -> u16 {
    !checksum_fold(checksum_add(0, bytes))
}

/// Completes the checksum of a frame marked `NEEDS_CSUM`: sums from
/// `csum_start` to the end (the checksum field holds the pseudo-header
/// sum) and stores the result, as `skb_checksum_help` does.
pub fn complete_checksum(frame: &mut [u8], header: &VnetHeader) -> Result<(), OffloadError> {
    let start = usize::from(header.csum_start);
    let at = start + usize::from(header.csum_offset);
    if at + 2 > frame.len() {
        return Err(OffloadError::BadChecksumPosition {
            start: header.csum_start,
            offset: header.csum_offset,
            len: frame.len(),
        });
    }
    let sum = !checksum_fold(checksum_add(0, &frame[start..]));
    let sum = if sum == 0 { 0xffff } else { sum };
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Where the IP header starts, and its EtherType, after any 802.1Q tags.
fn l3_offset(frame: &[u8]) -> Option<(usize, u16)> {
    let mut at = ETH_LEN - 2;
    loop {
        let ethertype = u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?);
        if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
            at += 4;
        } else {
            return Some((at + 2, ethertype));
        }
    }
}

/// Calls `emit` with every ordinary frame `packet` (virtio-net header +
/// frame) stands for: itself when its header is plain; itself with its
/// checksum completed; or, for a GSO TCP segment, its pieces of
/// `gso_size` payload bytes, each with its own IP length (and IPv4 id and
/// header checksum), sequence number and complete TCP checksum; FIN and
/// PSH only on the last piece, CWR only on the first. `scratch` is reused
/// between calls. Returns how many frames were emitted.
pub fn for_each_plain(
    packet: &[u8],
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    if packet.len() < HEADER_LEN + ETH_LEN {
        return Err(OffloadError::Short(packet.len()));
    }
    let header = VnetHeader::parse(packet).expect("length checked");
    let frame = &packet[HEADER_LEN..];
    if header.is_plain() {
        emit(frame);
        return Ok(1);
    }
    match header.gso_type & !GSO_ECN {
        GSO_NONE => {
            scratch.clear();
            scratch.extend_from_slice(frame);
            complete_checksum(scratch, &header)?;
            emit(scratch);
            Ok(1)
        }
        GSO_TCPV4 | GSO_TCPV6 => segment_tcp(frame, &header, scratch, emit),
        other => Err(OffloadError::UnsupportedGso(other)),
    }
}

fn segment_tcp(
    frame: &[u8],
    header: &VnetHeader,
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let v4 = header.gso_type & !GSO_ECN == GSO_TCPV4;
    let (l3, ethertype) = l3_offset(frame).ok_or(OffloadError::BadHeaders("Ethernet"))?;
    let l4 = if v4 {
        let ihl = frame.get(l3).map(|b| usize::from(b & 0x0f) * 4);
        match ihl {
            Some(ihl)
                if ethertype == ETHERTYPE_IPV4
                    && ihl >= 20
                    && frame[l3] >> 4 == 4
                    && frame.get(l3 + 9) == Some(&PROTO_TCP) =>
            {
                l3 + ihl
            }
            _ => return Err(OffloadError::BadHeaders("IPv4/TCP")),
        }
    } else {
        if ethertype != ETHERTYPE_IPV6 || frame.get(l3).is_none_or(|b| b >> 4 != 6) {
            return Err(OffloadError::BadHeaders("IPv6"));
        }
        // Extension headers sit between: the L4 header is where the
        // checksum starts.
        match usize::from(header.csum_start) {
            start if header.flags & F_NEEDS_CSUM != 0 && start >= l3 + 40 => start,
            _ if frame.get(l3 + 6) == Some(&PROTO_TCP) => l3 + 40,
            _ => return Err(OffloadError::BadHeaders("IPv6/TCP")),
        }
    };
    let thl = frame
        .get(l4 + 12)
        .map(|b| usize::from(b >> 4) * 4)
        .filter(|thl| *thl >= 20 && l4 + thl <= frame.len())
        .ok_or(OffloadError::BadHeaders("TCP"))?;
    let payload_at = l4 + thl;
    let payload = &frame[payload_at..];
    let mss = usize::from(header.gso_size).max(1);
    let seq = u32::from_be_bytes(frame[l4 + 4..l4 + 8].try_into().expect("4 bytes"));
    let flags = frame[l4 + 13];
    let ip_id = v4.then(|| u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]));
    let pieces = payload.len().div_ceil(mss).max(1);
    for i in 0..pieces {
        let off = i * mss;
        let chunk = &payload[off.min(payload.len())..(off + mss).min(payload.len())];
        scratch.clear();
        scratch.extend_from_slice(&frame[..payload_at]);
        scratch.extend_from_slice(chunk);
        let seg = scratch.as_mut_slice();
        let l4_len = thl + chunk.len();
        if let Some(id) = ip_id {
            let ihl = l4 - l3;
            let total = (ihl + l4_len) as u16;
            seg[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            seg[l3 + 4..l3 + 6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
            seg[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let sum = checksum(&seg[l3..l4]);
            seg[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
        } else {
            let len = (l4 - l3 - 40 + l4_len) as u16;
            seg[l3 + 4..l3 + 6].copy_from_slice(&len.to_be_bytes());
        }
        seg[l4 + 4..l4 + 8].copy_from_slice(&seq.wrapping_add(off as u32).to_be_bytes());
        let mut f = flags;
        if i + 1 < pieces {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        seg[l4 + 13] = f;
        seg[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
        let pseudo = if v4 {
            checksum_add(0, &seg[l3 + 12..l3 + 20])
        } else {
            checksum_add(0, &seg[l3 + 8..l3 + 40])
        };
        let pseudo = pseudo + u64::from(PROTO_TCP) + l4_len as u64;
        let sum = !checksum_fold(checksum_add(pseudo, &seg[l4..]));
        seg[l4 + 16..l4 + 18].copy_from_slice(&sum.to_be_bytes());
        emit(seg);
    }
    Ok(pieces)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn eth(ethertype: u16, vlan: Option<u16>) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&MAC_B);
        f.extend_from_slice(&MAC_A);
        if let Some(v) = vlan {
            f.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn tcp_header(seq: u32, flags: u8) -> Vec<u8> {
        let mut t = vec![0u8; 32];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&5201u16.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&77u32.to_be_bytes());
        t[12] = 8 << 4; // 32 bytes: 12 of options (NOP NOP timestamps)
        t[13] = flags;
        t[14..16].copy_from_slice(&512u16.to_be_bytes());
        t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        t
    }

    pub(crate) fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// A TCP/IPv4 superframe as a TAP hands it over: lengths of the whole,
    /// checksum field holding the pseudo-header sum.
    pub(crate) fn v4_packet(len: usize, flags: u8, mss: u16, vlan: Option<u16>) -> Vec<u8> {
        let mut f = eth(ETHERTYPE_IPV4, vlan);
        let l3 = f.len();
        let data = payload(len);
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, PROTO_TCP, 0, 0];
        ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        let total = (20 + 32 + len) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        let l4 = f.len();
        f.extend_from_slice(&tcp_header(1000, flags));
        f.extend_from_slice(&data);
        let pseudo = checksum_fold(checksum_add(0, &f[l3 + 12..l3 + 20]) + 6 + (32 + len) as u64);
        f[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        let header = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: if len > usize::from(mss) {
                GSO_TCPV4
            } else {
                GSO_NONE
            },
            hdr_len: (l4 + 32) as u16,
            gso_size: mss,
            csum_start: l4 as u16,
            csum_offset: 16,
        };
        let mut p = header.encode().to_vec();
        p.extend_from_slice(&f);
        p
    }

    fn v6_packet(len: usize, flags: u8, mss: u16) -> Vec<u8> {
        let mut f = eth(ETHERTYPE_IPV6, None);
        let l3 = f.len();
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&((32 + len) as u16).to_be_bytes());
        ip.extend_from_slice(&[PROTO_TCP, 64]);
        let mut src = [0u8; 16];
        src[0] = 0xfd;
        src[15] = 1;
        let mut dst = src;
        dst[15] = 2;
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        f.extend_from_slice(&ip);
        let l4 = f.len();
        f.extend_from_slice(&tcp_header(0xffff_f000, flags));
        f.extend_from_slice(&payload(len));
        let pseudo = checksum_fold(checksum_add(0, &f[l3 + 8..l3 + 40]) + 6 + (32 + len) as u64);
        f[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        let header = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: (l4 + 32) as u16,
            gso_size: mss,
            csum_start: l4 as u16,
            csum_offset: 16,
        };
        let mut p = header.encode().to_vec();
        p.extend_from_slice(&f);
        p
    }

    fn segments(packet: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let n = for_each_plain(packet, &mut Vec::new(), |f| out.push(f.to_vec())).unwrap();
        assert_eq!(n, out.len());
        out
    }

    /// Checks a plain TCP frame as a receiver would: IP header checksum
    /// and lengths, TCP checksum over the pseudo-header. Returns (seq,
    /// flags, payload).
    pub(crate) fn verify(frame: &[u8]) -> (u32, u8, Vec<u8>) {
        let (l3, ethertype) = l3_offset(frame).unwrap();
        let (l4, pseudo) = if ethertype == ETHERTYPE_IPV4 {
            assert_eq!(checksum(&frame[l3..l3 + 20]), 0, "IPv4 header checksum");
            let total = usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]));
            assert_eq!(total, frame.len() - l3, "IPv4 total length");
            (l3 + 20, checksum_add(0, &frame[l3 + 12..l3 + 20]))
        } else {
            let len = usize::from(u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]));
            assert_eq!(len, frame.len() - l3 - 40, "IPv6 payload length");
            (l3 + 40, checksum_add(0, &frame[l3 + 8..l3 + 40]))
        };
        let l4_len = frame.len() - l4;
        let sum = checksum_fold(checksum_add(pseudo + 6 + l4_len as u64, &frame[l4..]));
        assert_eq!(sum, 0xffff, "TCP checksum");
        let seq = u32::from_be_bytes(frame[l4 + 4..l4 + 8].try_into().unwrap());
        (seq, frame[l4 + 13], frame[l4 + 32..].to_vec())
    }

    #[test]
    fn header_round_trips_and_plain_is_plain() {
        let h = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6 | GSO_ECN,
            hdr_len: 86,
            gso_size: 1428,
            csum_start: 54,
            csum_offset: 16,
        };
        assert_eq!(VnetHeader::parse(&h.encode()), Some(h));
        assert!(!h.is_plain());
        assert!(VnetHeader::parse(&[0; HEADER_LEN]).unwrap().is_plain());
        assert!(VnetHeader::parse(&[0; 9]).is_none());
        let tagged = h.shifted(4);
        assert_eq!((tagged.csum_start, tagged.hdr_len), (58, 90));
        assert_eq!(tagged.shifted(-4), h);
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071's example words 0001 f203 f4f5 f6f7 sum to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum_fold(checksum_add(0, &bytes)), 0xddf2);
        // Odd length: the last byte is the high half of a word.
        assert_eq!(checksum_fold(checksum_add(0, &[0x12, 0x34, 0x56])), 0x6834);
    }

    #[test]
    fn plain_packets_pass_unchanged() {
        let mut p = vec![0u8; HEADER_LEN];
        p.extend_from_slice(&eth(0x0806, None));
        p.extend_from_slice(&[0; 28]);
        assert_eq!(segments(&p), vec![p[HEADER_LEN..].to_vec()]);
    }

    #[test]
    fn completes_checksums_of_small_segments_of_odd_length() {
        for len in [0, 1, 7, 999, 1447] {
            let p = v4_packet(len, TCP_PSH | 0x10, 1448, None);
            let out = segments(&p);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].len(), p.len() - HEADER_LEN);
            let (seq, flags, data) = verify(&out[0]);
            assert_eq!((seq, flags), (1000, TCP_PSH | 0x10));
            assert_eq!(data, payload(len));
        }
    }

    fn check_segmentation(p: &[u8], len: usize, mss: usize, first_seq: u32, flags: u8) {
        let out = segments(p);
        assert_eq!(out.len(), len.div_ceil(mss), "pieces of {len}");
        let mut data = Vec::new();
        for (i, seg) in out.iter().enumerate() {
            let (seq, f, piece) = verify(seg);
            assert_eq!(seq, first_seq.wrapping_add(data.len() as u32));
            let last = i + 1 == out.len();
            assert!(piece.len() == mss || last, "piece {i} of {}", piece.len());
            assert_eq!(
                f & (TCP_FIN | TCP_PSH) != 0,
                last && flags & (TCP_FIN | TCP_PSH) != 0
            );
            assert_eq!(f & TCP_CWR != 0, i == 0 && flags & TCP_CWR != 0);
            assert_eq!(f & 0x10, 0x10, "ACK on every piece");
            data.extend_from_slice(&piece);
        }
        assert_eq!(data, payload(len));
    }

    #[test]
    fn segments_tcp_over_ipv4_with_flags_on_the_right_pieces() {
        for len in [1449, 2896, 65000 - 52, 10_001] {
            let flags = 0x10 | TCP_PSH | TCP_FIN | TCP_CWR;
            let p = v4_packet(len, flags, 1448, None);
            check_segmentation(&p, len, 1448, 1000, flags);
            // IPv4 ids count up from the superframe's.
            let out = segments(&p);
            let ids: Vec<u16> = out
                .iter()
                .map(|s| u16::from_be_bytes([s[18], s[19]]))
                .collect();
            assert_eq!(ids[0], 0x1234);
            assert!(ids.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        }
    }

    #[test]
    fn segments_tagged_frames() {
        let flags = 0x10 | TCP_PSH;
        let p = v4_packet(5000, flags, 1400, Some(42));
        check_segmentation(&p, 5000, 1400, 1000, flags);
        assert!(segments(&p).iter().all(|s| s[12..16] == [0x81, 0, 0, 42]));
    }

    #[test]
    fn segments_tcp_over_ipv6_across_sequence_wrap() {
        for len in [1429, 3000, 63_001] {
            let flags = 0x10 | TCP_FIN;
            let p = v6_packet(len, flags, 1428);
            check_segmentation(&p, len, 1428, 0xffff_f000, flags);
        }
    }

    #[test]
    fn hostile_packets_never_panic() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let good = v4_packet(4000, 0x18, 1448, None);
        for _ in 0..20_000 {
            let mut p = if rng.random_bool(0.5) {
                good.clone()
            } else {
                let len = rng.random_range(0..200);
                (0..len).map(|_| rng.random()).collect()
            };
            // Damage a few bytes, often in the headers.
            for _ in 0..rng.random_range(1..4) {
                if !p.is_empty() {
                    let at = rng.random_range(0..p.len().min(90));
                    p[at] = rng.random();
                }
            }
            if p.len() > 1 && rng.random_bool(0.3) {
                p[1] = [GSO_TCPV4, GSO_TCPV6, GSO_NONE][rng.random_range(0..3)];
            }
            if rng.random_bool(0.3) {
                p.truncate(rng.random_range(0..p.len() + 1));
            }
            let _ = for_each_plain(&p, &mut Vec::new(), |_| {});
        }
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let mut p = v4_packet(3000, 0x10, 1448, None);
        assert_eq!(
            for_each_plain(&p[..20], &mut Vec::new(), |_| {}),
            Err(OffloadError::Short(20))
        );
        p[1] = GSO_UDP;
        assert_eq!(
            for_each_plain(&p, &mut Vec::new(), |_| {}),
            Err(OffloadError::UnsupportedGso(GSO_UDP))
        );
        let mut q = v4_packet(100, 0x10, 1448, None);
        q[8..10].copy_from_slice(&5000u16.to_ne_bytes());
        assert!(matches!(
            for_each_plain(&q, &mut Vec::new(), |_| {}),
            Err(OffloadError::BadChecksumPosition { .. })
        ));
        let mut r = v4_packet(3000, 0x10, 1448, None);
        r[HEADER_LEN + 14] = 0x65; // not IPv4
        assert!(matches!(
            for_each_plain(&r, &mut Vec::new(), |_| {}),
            Err(OffloadError::BadHeaders(_))
        ));
    }
}
