//! The datagram format: one message per UDP datagram, hand-rolled, all
//! integers big-endian.
//!
//! ```text
//! header   magic "VC" (2) | version 1 (1) | kind (1) | request id (8)
//! node     id (4) | family 4 or 6 (1) | address (4 or 16) | port (2)
//! opt node present 0 or 1 (1) [| node]
//! nodes    count (1) | node * count
//! ```
//!
//! Requests have kinds below `0x80`, responses `0x80` and above; a response
//! carries the request id of the request it answers. See `docs/chord.md`
//! for the table of kinds and their bodies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

use crate::id::Id;

/// The first two bytes of every message.
pub const MAGIC: [u8; 2] = *b"VC";
/// The format version this build speaks; others are refused.
pub const VERSION: u8 = 1;
/// Bytes before a message's body.
pub const HEADER_LEN: usize = 12;
/// The largest message we send or accept; every message fits one datagram
/// below a 1500-byte MTU with IPv4 addresses.
pub const MAX_MESSAGE: usize = 1400;
/// The most nodes a list (successors, candidates, fingers) may hold.
pub const MAX_NODES: usize = 40;
/// Longest error text carried in a response; longer ones are cut.
const MAX_ERROR_TEXT: usize = 256;

/// A peer on the ring: its identifier and the UDP address it answers on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Node {
    /// Its place on the ring.
    pub id: Id,
    /// Where it receives messages.
    pub addr: SocketAddr,
}

/// What one peer asks another.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Request {
    /// Are you alive? Answered by [`Response::Pong`].
    Ping,
    /// Your predecessor and successor list? Answered by [`Response::Neighbors`].
    GetNeighbors,
    /// "I might be your predecessor." Answered by [`Response::Neighbors`]
    /// as they are after the notify, so that a notifier that is not taken
    /// as predecessor learns who is.
    Notify(Node),
    /// One step of an iterative lookup of a key: answered by
    /// [`Response::Owner`] when the answering peer knows the key's owner,
    /// else by [`Response::Next`] with peers closer to the key.
    FindStep(Id),
    /// Resolve this key for me (a client's request): the answering peer runs
    /// the whole iterative lookup and answers with [`Response::Found`].
    Lookup(Id),
    /// Your whole routing state? Answered by [`Response::Status`].
    GetStatus,
}

/// A peer's routing state, as reported by [`Response::Status`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Status {
    /// The answering peer.
    pub me: Node,
    /// Its predecessor, if it knows one.
    pub pred: Option<Node>,
    /// Its successor list, nearest first.
    pub succs: Vec<Node>,
    /// Its finger table, finger 0 first, `M` entries.
    pub fingers: Vec<Option<Node>>,
}

/// What a peer answers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Response {
    /// I am alive, and this is who I am.
    Pong(Node),
    /// My neighbours.
    Neighbors {
        /// The answering peer.
        me: Node,
        /// Its predecessor, if known.
        pred: Option<Node>,
        /// Its successor list, nearest first.
        succs: Vec<Node>,
    },
    /// The key's owner (its successor on the ring).
    Owner(Node),
    /// Ask one of these instead: peers preceding the key, the closest first.
    Next(Vec<Node>),
    /// The result of a whole lookup: the owner, and the number of peers the
    /// lookup contacted.
    Found {
        /// The key's owner.
        owner: Node,
        /// Peers contacted along the lookup path.
        hops: u16,
    },
    /// My routing state.
    Status(Status),
    /// The request failed; the text says why.
    Error(String),
}

/// A message's body: a request or a response.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Body {
    /// A request, to be answered.
    Request(Request),
    /// A response to the request with the same id.
    Response(Response),
}

/// One datagram.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    /// Chosen by the requester; echoed by the response.
    pub id: u64,
    /// What the message says.
    pub body: Body,
}

/// Why a datagram is not a message we understand.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// The datagram ends before the message does.
    #[error("message truncated: needed {need} bytes at offset {at}, datagram has {len}")]
    Truncated {
        /// Bytes wanted.
        need: usize,
        /// Where they were wanted.
        at: usize,
        /// Datagram length.
        len: usize,
    },
    /// Not a vBET Chord message at all.
    #[error("bad magic {0:02x?}, not a vBET Chord message")]
    BadMagic([u8; 2]),
    /// A version this build does not speak.
    #[error("unsupported message version {0} (this peer speaks version {VERSION})")]
    UnsupportedVersion(u8),
    /// A message kind this version does not define.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// An address family other than 4 or 6.
    #[error("unknown address family {0}")]
    BadFamily(u8),
    /// A flag byte other than 0 or 1.
    #[error("bad presence flag {0}")]
    BadFlag(u8),
    /// A node list longer than [`MAX_NODES`].
    #[error("node list of {0} entries exceeds the limit of {MAX_NODES}")]
    TooManyNodes(usize),
    /// Error text that is not UTF-8.
    #[error("error text is not UTF-8")]
    BadText,
    /// Bytes left over after the message.
    #[error("{0} bytes left over after the message")]
    Trailing(usize),
    /// The encoded message would not fit one datagram.
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE}")]
    TooLong(usize),
}

mod kind {
    pub const PING: u8 = 0x01;
    pub const GET_NEIGHBORS: u8 = 0x02;
    pub const NOTIFY: u8 = 0x03;
    pub const FIND_STEP: u8 = 0x04;
    pub const LOOKUP: u8 = 0x05;
    pub const GET_STATUS: u8 = 0x06;
    pub const PONG: u8 = 0x81;
    pub const NEIGHBORS: u8 = 0x82;
    // 0x83 is reserved (an acknowledgement, unused since notify answers
    // with neighbours).
    pub const OWNER: u8 = 0x84;
    pub const NEXT: u8 = 0x85;
    pub const FOUND: u8 = 0x86;
    pub const STATUS: u8 = 0x87;
    pub const ERROR: u8 = 0xff;
}

impl Message {
    /// A request with the given id.
    pub fn request(id: u64, request: Request) -> Message {
        Message {
            id,
            body: Body::Request(request),
        }
    }

    /// A response with the given id.
    pub fn response(id: u64, response: Response) -> Message {
        Message {
            id,
            body: Body::Response(response),
        }
    }

    /// Encodes the message into one datagram.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut w = Writer(Vec::with_capacity(64));
        w.0.extend_from_slice(&MAGIC);
        w.u8(VERSION);
        let kind_at = w.0.len();
        w.u8(0);
        w.0.extend_from_slice(&self.id.to_be_bytes());
        let kind = match &self.body {
            Body::Request(r) => match r {
                Request::Ping => kind::PING,
                Request::GetNeighbors => kind::GET_NEIGHBORS,
                Request::Notify(n) => {
                    w.node(n);
                    kind::NOTIFY
                }
                Request::FindStep(key) => {
                    w.id(*key);
                    kind::FIND_STEP
                }
                Request::Lookup(key) => {
                    w.id(*key);
                    kind::LOOKUP
                }
                Request::GetStatus => kind::GET_STATUS,
            },
            Body::Response(r) => match r {
                Response::Pong(n) => {
                    w.node(n);
                    kind::PONG
                }
                Response::Neighbors { me, pred, succs } => {
                    w.node(me);
                    w.opt_node(pred.as_ref());
                    w.nodes(succs)?;
                    kind::NEIGHBORS
                }
                Response::Owner(n) => {
                    w.node(n);
                    kind::OWNER
                }
                Response::Next(nodes) => {
                    w.nodes(nodes)?;
                    kind::NEXT
                }
                Response::Found { owner, hops } => {
                    w.node(owner);
                    w.0.extend_from_slice(&hops.to_be_bytes());
                    kind::FOUND
                }
                Response::Status(s) => {
                    w.node(&s.me);
                    w.opt_node(s.pred.as_ref());
                    w.nodes(&s.succs)?;
                    if s.fingers.len() > MAX_NODES {
                        return Err(WireError::TooManyNodes(s.fingers.len()));
                    }
                    w.u8(s.fingers.len() as u8);
                    for f in &s.fingers {
                        w.opt_node(f.as_ref());
                    }
                    kind::STATUS
                }
                Response::Error(text) => {
                    let mut end = text.len().min(MAX_ERROR_TEXT);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    w.0.extend_from_slice(&(end as u16).to_be_bytes());
                    w.0.extend_from_slice(&text.as_bytes()[..end]);
                    kind::ERROR
                }
            },
        };
        w.0[kind_at] = kind;
        if w.0.len() > MAX_MESSAGE {
            return Err(WireError::TooLong(w.0.len()));
        }
        Ok(w.0)
    }

    /// Decodes one datagram, checking every length, flag and kind.
    pub fn decode(buf: &[u8]) -> Result<Message, WireError> {
        let mut r = Reader { buf, at: 0 };
        let magic = [r.u8()?, r.u8()?];
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let kind = r.u8()?;
        let id = u64::from_be_bytes(r.array()?);
        let body = match kind {
            kind::PING => Body::Request(Request::Ping),
            kind::GET_NEIGHBORS => Body::Request(Request::GetNeighbors),
            kind::NOTIFY => Body::Request(Request::Notify(r.node()?)),
            kind::FIND_STEP => Body::Request(Request::FindStep(r.id()?)),
            kind::LOOKUP => Body::Request(Request::Lookup(r.id()?)),
            kind::GET_STATUS => Body::Request(Request::GetStatus),
            kind::PONG => Body::Response(Response::Pong(r.node()?)),
            kind::NEIGHBORS => Body::Response(Response::Neighbors {
                me: r.node()?,
                pred: r.opt_node()?,
                succs: r.nodes()?,
            }),
            kind::OWNER => Body::Response(Response::Owner(r.node()?)),
            kind::NEXT => Body::Response(Response::Next(r.nodes()?)),
            kind::FOUND => Body::Response(Response::Found {
                owner: r.node()?,
                hops: u16::from_be_bytes(r.array()?),
            }),
            kind::STATUS => {
                let me = r.node()?;
                let pred = r.opt_node()?;
                let succs = r.nodes()?;
                let n = r.count()?;
                let fingers = (0..n).map(|_| r.opt_node()).collect::<Result<_, _>>()?;
                Body::Response(Response::Status(Status {
                    me,
                    pred,
                    succs,
                    fingers,
                }))
            }
            kind::ERROR => {
                let len = u16::from_be_bytes(r.array()?) as usize;
                let text = std::str::from_utf8(r.take(len)?).map_err(|_| WireError::BadText)?;
                Body::Response(Response::Error(text.to_owned()))
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        if r.at != buf.len() {
            return Err(WireError::Trailing(buf.len() - r.at));
        }
        Ok(Message { id, body })
    }
}

/// Reads the request id of a datagram whose header is intact, even if the
/// rest is not understood, so that the requester can be told why.
pub fn request_id(buf: &[u8]) -> Option<u64> {
    if buf.len() < HEADER_LEN || buf[..2] != MAGIC || buf[3] >= 0x80 {
        return None;
    }
    Some(u64::from_be_bytes(buf[4..12].try_into().ok()?))
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn id(&mut self, id: Id) {
        self.0.extend_from_slice(&id.0.to_be_bytes());
    }

    fn node(&mut self, n: &Node) {
        self.id(n.id);
        match n.addr.ip() {
            IpAddr::V4(ip) => {
                self.u8(4);
                self.0.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(6);
                self.0.extend_from_slice(&ip.octets());
            }
        }
        self.0.extend_from_slice(&n.addr.port().to_be_bytes());
    }

    fn opt_node(&mut self, n: Option<&Node>) {
        match n {
            None => self.u8(0),
            Some(n) => {
                self.u8(1);
                self.node(n);
            }
        }
    }

    fn nodes(&mut self, nodes: &[Node]) -> Result<(), WireError> {
        if nodes.len() > MAX_NODES {
            return Err(WireError::TooManyNodes(nodes.len()));
        }
        self.u8(nodes.len() as u8);
        for n in nodes {
            self.node(n);
        }
        Ok(())
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at + n;
        let bytes = self.buf.get(self.at..end).ok_or(WireError::Truncated {
            need: n,
            at: self.at,
            len: self.buf.len(),
        })?;
        self.at = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn id(&mut self) -> Result<Id, WireError> {
        Ok(Id(u32::from_be_bytes(self.array()?)))
    }

    fn node(&mut self) -> Result<Node, WireError> {
        let id = self.id()?;
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            other => return Err(WireError::BadFamily(other)),
        };
        let port = u16::from_be_bytes(self.array()?);
        Ok(Node {
            id,
            addr: SocketAddr::new(ip, port),
        })
    }

    fn opt_node(&mut self) -> Result<Option<Node>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.node()?)),
            other => Err(WireError::BadFlag(other)),
        }
    }

    fn count(&mut self) -> Result<usize, WireError> {
        let n = self.u8()? as usize;
        if n > MAX_NODES {
            return Err(WireError::TooManyNodes(n));
        }
        Ok(n)
    }

    fn nodes(&mut self) -> Result<Vec<Node>, WireError> {
        let n = self.count()?;
        (0..n).map(|_| self.node()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u32, addr: &str) -> Node {
        Node {
            id: Id(id),
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn ping_bytes() {
        let bytes = Message::request(0x0102030405060708, Request::Ping)
            .encode()
            .unwrap();
        assert_eq!(bytes, b"VC\x01\x01\x01\x02\x03\x04\x05\x06\x07\x08");
    }

    #[test]
    fn owner_bytes_decode() {
        static BYTES: [u8; 23] = [
            b'V', b'C', 1, 0x84, 0, 0, 0, 0, 0, 0, 0, 42, // header
            0xde, 0xad, 0xbe, 0xef, 4, 10, 43, 0, 7, 0x0f, 0xa0, // node
        ];
        let m = Message::decode(&BYTES).unwrap();
        assert_eq!(
            m,
            Message::response(42, Response::Owner(node(0xdeadbeef, "10.43.0.7:4000")))
        );
        assert_eq!(m.encode().unwrap(), BYTES);
    }

    #[test]
    fn every_kind_round_trips() {
        let a = node(1, "127.0.0.1:1");
        let b = node(2, "[::1]:2");
        let messages = [
            Message::request(1, Request::Ping),
            Message::request(2, Request::GetNeighbors),
            Message::request(3, Request::Notify(b)),
            Message::request(4, Request::FindStep(Id(77))),
            Message::request(5, Request::Lookup(Id(u32::MAX))),
            Message::request(6, Request::GetStatus),
            Message::response(7, Response::Pong(a)),
            Message::response(
                8,
                Response::Neighbors {
                    me: a,
                    pred: Some(b),
                    succs: vec![b, a],
                },
            ),
            Message::response(
                8,
                Response::Neighbors {
                    me: a,
                    pred: None,
                    succs: vec![],
                },
            ),
            Message::response(10, Response::Owner(b)),
            Message::response(11, Response::Next(vec![a, b, a])),
            Message::response(12, Response::Found { owner: a, hops: 3 }),
            Message::response(
                13,
                Response::Status(Status {
                    me: a,
                    pred: None,
                    succs: vec![b; 8],
                    fingers: (0..32).map(|i| (i % 3 != 0).then_some(a)).collect(),
                }),
            ),
            Message::response(14, Response::Error("no route — try later".into())),
        ];
        for m in messages {
            let bytes = m.encode().unwrap();
            assert!(bytes.len() <= MAX_MESSAGE);
            assert_eq!(Message::decode(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(
            Message::decode(b"XX\x01\x01\0\0\0\0\0\0\0\0"),
            Err(WireError::BadMagic(*b"XX"))
        );
        assert_eq!(
            Message::decode(b"VC\x02\x01\0\0\0\0\0\0\0\0"),
            Err(WireError::UnsupportedVersion(2))
        );
        assert_eq!(
            Message::decode(b"VC\x01\x40\0\0\0\0\0\0\0\0"),
            Err(WireError::UnknownKind(0x40))
        );
        assert!(matches!(
            Message::decode(b"VC\x01\x04\0\0\0\0\0\0\0\0\x01"),
            Err(WireError::Truncated {
                need: 4,
                at: 12,
                ..
            })
        ));
        assert_eq!(
            Message::decode(b"VC\x01\x01\0\0\0\0\0\0\0\0\x00"),
            Err(WireError::Trailing(1))
        );
        assert_eq!(
            Message::decode(b"VC\x01\x84\0\0\0\0\0\0\0\0\0\0\0\x01\x05"),
            Err(WireError::BadFamily(5))
        );
        assert_eq!(
            Message::decode(b"VC\x01\x85\0\0\0\0\0\0\0\0\xff"),
            Err(WireError::TooManyNodes(255))
        );
        assert!(Message::decode(b"VC").is_err());
    }

    #[test]
    fn request_id_of_header() {
        assert_eq!(request_id(b"VC\x09\x01\0\0\0\0\0\0\0\x07"), Some(7));
        assert_eq!(request_id(b"VC\x01\x81\0\0\0\0\0\0\0\x07"), None);
        assert_eq!(request_id(b"VC\x01"), None);
    }

    #[test]
    fn long_error_text_is_cut_on_a_char_boundary() {
        let m = Message::response(1, Response::Error("é".repeat(300)));
        let Body::Response(Response::Error(text)) =
            Message::decode(&m.encode().unwrap()).unwrap().body
        else {
            panic!("not an error");
        };
        assert_eq!(text, "é".repeat(128));
    }
}
