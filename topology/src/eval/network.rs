//! The paper's functions: `alloc`, `attach`, `NIC`, `plug` and `link`.

use super::*;

impl Eval<'_> {
    pub(super) fn alloc(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        let Some((k, kspan)) = self.arity(c, &args, 1, 1, span) else {
            return Value::Poison;
        };
        let v = match k {
            Value::Kind(KindRef::Builtin(Builtin::Nic | Builtin::Cable)) if !self.grow(span) => {
                Value::Poison
            }
            Value::Kind(KindRef::Builtin(Builtin::Nic)) => {
                self.loose.push(LooseNic {
                    span,
                    attrs: Vec::new(),
                    attached: None,
                });
                Value::Nic(NicRef::Loose(self.loose.len() - 1))
            }
            Value::Kind(KindRef::Builtin(Builtin::Cable)) => {
                self.cables.push(CableState {
                    name: None,
                    span,
                    ends: Vec::new(),
                    failed: false,
                    state: LinkState::Up,
                    impair: Impair::default(),
                });
                Value::Cable(self.cables.len() - 1)
            }
            Value::Kind(KindRef::Builtin(b @ (Builtin::Switch | Builtin::Hub))) => {
                let kind = if b == Builtin::Hub {
                    SwitchKind::Hub
                } else {
                    SwitchKind::Switch
                };
                self.new_device(
                    DeviceBody::Switch(Switch {
                        kind,
                        ..Switch::default()
                    }),
                    span,
                )
            }
            Value::Kind(kr) => {
                let kind = match kr {
                    KindRef::Builtin(b) => b.node_kind().unwrap_or("host").to_string(),
                    KindRef::User(i) => match &self.kinds[i].name {
                        Some(n) => n.clone(),
                        None => {
                            return self.err(
                                ErrorKind::WrongArgs {
                                    func: "alloc".into(),
                                    message: "a kind must be named before use: k = kind(host, ...)"
                                        .into(),
                                },
                                kspan,
                            );
                        }
                    },
                };
                let node = Node {
                    kind,
                    ..Node::default()
                };
                self.new_device(DeviceBody::Node(Box::new(node)), span)
            }
            other => {
                return self.err(
                    ErrorKind::WrongType {
                        expected: "a kind (host, router, switch, NIC, cable, ...)".into(),
                        found: other.describe().into(),
                    },
                    kspan,
                );
            }
        };
        self.apply_attrs(&v, span, attrs);
        v
    }

    pub(super) fn attach(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if !self.no_attrs(c, &attrs) {
            return Value::Poison;
        }
        let Some((target, tspan)) = self.arity(c, &args, 1, usize::MAX, span) else {
            return Value::Poison;
        };
        let Value::Device(d) = target else {
            return self.err(
                ErrorKind::WrongType {
                    expected: "a node or switch to attach NICs to".into(),
                    found: target.describe().into(),
                },
                tspan,
            );
        };
        for (v, s) in args.into_iter().skip(1) {
            match v {
                Value::Nic(NicRef::Loose(l)) => {
                    if let Some((od, _)) = self.loose[l].attached {
                        let device = self.device_label(od);
                        self.err(ErrorKind::NicAttachedTwice { device }, s);
                        continue;
                    }
                    let idx = self.add_nic(d, s);
                    self.loose[l].attached = Some((d, idx));
                    let pending = std::mem::take(&mut self.loose[l].attrs);
                    for (key, kspan, value, vspan) in pending {
                        self.apply_attr(&Value::Nic(NicRef::At(d, idx)), &key, kspan, value, vspan);
                    }
                }
                Value::Nic(NicRef::At(od, _)) => {
                    let device = self.device_label(od);
                    self.err(ErrorKind::NicAttachedTwice { device }, s);
                }
                other => {
                    self.err(
                        ErrorKind::WrongType {
                            expected: "alloc(NIC)".into(),
                            found: other.describe().into(),
                        },
                        s,
                    );
                }
            }
        }
        Value::Device(d)
    }

    pub(super) fn nic_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if !self.no_attrs(c, &attrs) {
            return Value::Poison;
        }
        let Some((target, tspan)) = self.arity(c, &args, 1, 2, span) else {
            return Value::Poison;
        };
        let Value::Device(d) = target else {
            return self.err(
                ErrorKind::WrongType {
                    expected: "a node, switch or hub".into(),
                    found: target.describe().into(),
                },
                tspan,
            );
        };
        match args.get(1) {
            None => self
                .free_nic(d, span)
                .map_or(Value::Poison, |i| Value::Nic(NicRef::At(d, i))),
            Some((Value::Int(i), ispan)) => {
                let count = self.devices[d].nic_count();
                if *i < 1 || *i as u64 > count as u64 {
                    let device = self.device_label(d);
                    let p = Problem::new(
                        ErrorKind::NicIndex {
                            device,
                            index: *i,
                            count,
                        },
                        *ispan,
                    )
                    .note(self.devices[d].span, "made here");
                    self.problems.push(p);
                    return Value::Poison;
                }
                Value::Nic(NicRef::At(d, *i as u32))
            }
            Some((other, ispan)) => self.err(
                ErrorKind::WrongType {
                    expected: "a NIC number (from 1)".into(),
                    found: other.describe().into(),
                },
                *ispan,
            ),
        }
    }

    pub(super) fn plug(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if !self.no_attrs(c, &attrs) || self.arity(c, &args, 2, 2, span).is_none() {
            return Value::Poison;
        }
        let Value::Cable(cable) = args[0].0 else {
            return self.err(
                ErrorKind::WrongType {
                    expected: "a cable".into(),
                    found: args[0].0.describe().into(),
                },
                args[0].1,
            );
        };
        let ok = match self.as_nic(&args[1].0, args[1].1) {
            Some(nic) => self.plug_end(cable, nic, args[1].1),
            None => false,
        };
        self.cables[cable].failed |= !ok;
        Value::Cable(cable)
    }

    pub(super) fn link(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        let Some((first, fspan)) = self.arity(c, &args, 2, usize::MAX, span) else {
            return Value::Poison;
        };
        if let Value::Device(s) = first {
            if self.devices[s].is_switch() {
                for (v, vspan) in &args[1..] {
                    let Some(end) = self.as_nic(v, *vspan) else {
                        continue;
                    };
                    let Some(port) = self.free_nic(s, *vspan) else {
                        continue;
                    };
                    let cable = self.new_cable(*vspan);
                    if self.plug_end(cable, (s, port), *vspan) && self.plug_end(cable, end, *vspan)
                    {
                        self.apply_attrs(&Value::Cable(cable), *vspan, attrs.clone());
                    } else {
                        // Drop the half-made cable; its error is reported.
                        for (d, i, _) in std::mem::take(&mut self.cables[cable].ends) {
                            self.devices[d].cable_at[(i - 1) as usize] = None;
                        }
                        self.cables.pop();
                    }
                }
                return Value::Device(s);
            }
        }
        if args.len() != 2 {
            return self.err(
                ErrorKind::WrongArgs {
                    func: "link".into(),
                    message:
                        "joins two NICs, or a switch or hub (first) to any number of NICs and nodes"
                            .into(),
                },
                fspan,
            );
        }
        let a = self.as_nic(&args[0].0, args[0].1);
        let b = self.as_nic(&args[1].0, args[1].1);
        let (Some(a), Some(b)) = (a, b) else {
            return Value::Poison;
        };
        let cable = self.new_cable(span);
        if !(self.plug_end(cable, a, args[0].1) && self.plug_end(cable, b, args[1].1)) {
            for (d, i, _) in std::mem::take(&mut self.cables[cable].ends) {
                self.devices[d].cable_at[(i - 1) as usize] = None;
            }
            self.cables.pop();
            return Value::Poison;
        }
        self.apply_attrs(&Value::Cable(cable), span, attrs);
        Value::Cable(cable)
    }

    /// Counts a new entity; false (reported once) when there are too many.
    pub(super) fn grow(&mut self, span: Span) -> bool {
        self.entities += 1;
        if self.entities > MAX_ENTITIES {
            if !self.limit_hit {
                self.err(
                    ErrorKind::Limit(format!(
                        "the program makes more than {MAX_ENTITIES} nodes, NICs and cables"
                    )),
                    span,
                );
            }
            self.limit_hit = true;
            return false;
        }
        true
    }

    pub(super) fn new_device(&mut self, body: DeviceBody, span: Span) -> Value {
        if !self.grow(span) {
            return Value::Poison;
        }
        self.devices.push(Device {
            name: None,
            span,
            body,
            cable_at: Vec::new(),
            nic_spans: Vec::new(),
            file_spans: Vec::new(),
            addr_spans: HashMap::new(),
            gateway_span: None,
            route_spans: Vec::new(),
        });
        Value::Device(self.devices.len() - 1)
    }

    /// Adds a NIC (or port) to device `d`; returns its index from 1.
    pub(super) fn add_nic(&mut self, d: usize, span: Span) -> u32 {
        self.grow(span);
        let dev = &mut self.devices[d];
        match &mut dev.body {
            DeviceBody::Node(n) => n.nics.push(Nic::default()),
            DeviceBody::Switch(s) => s.ports.push(Port::default()),
        }
        dev.cable_at.push(None);
        dev.nic_spans.push(span);
        dev.cable_at.len() as u32
    }

    pub(super) fn device_label(&self, d: usize) -> String {
        self.devices[d]
            .name
            .clone()
            .unwrap_or_else(|| match &self.devices[d].body {
                DeviceBody::Node(n) => format!("this {}", n.kind),
                DeviceBody::Switch(s) if s.kind == SwitchKind::Hub => "this hub".into(),
                DeviceBody::Switch(_) => "this switch".into(),
            })
    }

    pub(super) fn nic_label(&self, d: usize, i: u32) -> String {
        format!("NIC({},{i})", self.device_label(d))
    }

    pub(super) fn cable_label(&self, c: usize) -> String {
        self.cables[c]
            .name
            .clone()
            .unwrap_or_else(|| format!("#{}", c + 1))
    }

    /// The next NIC of `d` with no cable; a switch or hub grows a port if none is free.
    pub(super) fn free_nic(&mut self, d: usize, span: Span) -> Option<u32> {
        if let Some(i) = self.devices[d].cable_at.iter().position(Option::is_none) {
            return Some(i as u32 + 1);
        }
        if self.devices[d].is_switch() {
            return Some(self.add_nic(d, span));
        }
        let device = self.device_label(d);
        let count = self.devices[d].nic_count();
        self.err(ErrorKind::NoFreeNic { device, count }, span);
        None
    }

    /// A NIC from a value: a NIC, or a node's next free NIC, or a switch's next free port.
    pub(super) fn as_nic(&mut self, v: &Value, span: Span) -> Option<(usize, u32)> {
        match v {
            Value::Nic(NicRef::At(d, i)) => Some((*d, *i)),
            Value::Nic(NicRef::Loose(_)) => {
                self.err(ErrorKind::NicNotAttached, span);
                None
            }
            Value::Device(d) => self.free_nic(*d, span).map(|i| (*d, i)),
            Value::Poison => None,
            other => {
                self.err(
                    ErrorKind::WrongType {
                        expected: "a NIC or a node".into(),
                        found: other.describe().into(),
                    },
                    span,
                );
                None
            }
        }
    }

    pub(super) fn plug_end(&mut self, c: usize, (d, i): (usize, u32), span: Span) -> bool {
        let ends = &self.cables[c].ends;
        if ends.iter().any(|(ed, ei, _)| (*ed, *ei) == (d, i)) {
            let (cable, nic) = (self.cable_label(c), self.nic_label(d, i));
            self.err(ErrorKind::CablePluggedTwice { cable, nic }, span);
            return false;
        }
        if ends.len() >= 2 {
            let first = self.nic_label(ends[0].0, ends[0].1);
            let second = self.nic_label(ends[1].0, ends[1].1);
            let cable = self.cable_label(c);
            let p = Problem::new(
                ErrorKind::CableThreeEnds {
                    cable,
                    first,
                    second,
                },
                span,
            )
            .note(self.cables[c].ends[0].2, "first end")
            .note(self.cables[c].ends[1].2, "second end");
            self.problems.push(p);
            return false;
        }
        if let Some(other) = self.devices[d].cable_at[(i - 1) as usize] {
            let (nic, cable) = (self.nic_label(d, i), self.cable_label(other));
            let mut p = Problem::new(ErrorKind::NicTwoCables { nic, cable }, span);
            if let Some(e) = self.cables[other]
                .ends
                .iter()
                .find(|e| (e.0, e.1) == (d, i))
            {
                p = p.note(e.2, "plugged here");
            }
            self.problems.push(p);
            return false;
        }
        self.devices[d].cable_at[(i - 1) as usize] = Some(c);
        self.cables[c].ends.push((d, i, span));
        true
    }

    pub(super) fn new_cable(&mut self, span: Span) -> usize {
        self.grow(span);
        self.cables.push(CableState {
            name: None,
            span,
            ends: Vec::new(),
            failed: false,
            state: LinkState::Up,
            impair: Impair::default(),
        });
        self.cables.len() - 1
    }
}
