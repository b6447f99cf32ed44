//! `key=value` attributes of nodes, NICs, ports, switches, cables and kinds.

use super::*;

impl Eval<'_> {
    pub(super) fn apply_attrs(&mut self, target: &Value, _span: Span, attrs: Vec<(&Attr, Value)>) {
        for (a, v) in attrs {
            self.apply_attr(target, &a.key, a.key_span, v, a.value.span);
        }
    }

    pub(super) fn bad(&mut self, attr: &str, message: impl Into<String>, span: Span) {
        self.err(
            ErrorKind::BadValue {
                attr: attr.into(),
                message: message.into(),
            },
            span,
        );
    }

    pub(super) fn apply_attr(
        &mut self,
        target: &Value,
        key: &str,
        kspan: Span,
        v: Value,
        vspan: Span,
    ) {
        let unknown = |ev: &mut Self, names: &[&str], what: &str| {
            let suggestion = suggest(key, names.iter().copied());
            ev.err(
                ErrorKind::UnknownAttribute {
                    attr: key.into(),
                    target: what.into(),
                    suggestion,
                },
                kspan,
            );
        };
        match target {
            Value::Nic(NicRef::Loose(l)) => {
                if let Some((d, i)) = self.loose[*l].attached {
                    return self.apply_attr(&Value::Nic(NicRef::At(d, i)), key, kspan, v, vspan);
                }
                if !LOOSE_NIC_ATTRS.contains(&key) {
                    return unknown(self, LOOSE_NIC_ATTRS, "a NIC");
                }
                self.loose[*l].attrs.push((key.into(), kspan, v, vspan));
            }
            Value::Nic(NicRef::At(d, i)) => {
                let (d, i) = (*d, *i);
                let idx = (i - 1) as usize;
                match &mut self.devices[d].body {
                    DeviceBody::Node(n) => match key {
                        "addr" => {
                            let mut addrs = Vec::new();
                            for item in as_list(v) {
                                match item {
                                    Value::Str(s) => match s.parse::<IfAddr>() {
                                        Ok(a) => addrs.push(a),
                                        Err(m) => return self.bad("addr", m, vspan),
                                    },
                                    other => {
                                        return self.bad("addr", format!("expected an address like \"10.0.1.1/24\", found {}", other.describe()), vspan);
                                    }
                                }
                            }
                            n.nics[idx].addrs = addrs;
                            self.devices[d].addr_spans.insert(i, vspan);
                        }
                        "mac" => match v {
                            Value::Str(s) => match s.parse::<Mac>() {
                                Ok(m) => n.nics[idx].mac = Some(m),
                                Err(m) => self.bad("mac", m, vspan),
                            },
                            other => self.bad(
                                "mac",
                                format!("expected a string, found {}", other.describe()),
                                vspan,
                            ),
                        },
                        "mtu" => match v {
                            Value::Int(m) if (68..=65535).contains(&m) => {
                                n.nics[idx].mtu = Some(m as u32)
                            }
                            _ => self.bad("mtu", "expected a whole number from 68 to 65535", vspan),
                        },
                        "vlan" | "trunk" => self.bad(
                            key,
                            "VLANs are set on switch ports, not on a node's NIC",
                            kspan,
                        ),
                        _ => unknown(self, NIC_ATTRS, "a NIC"),
                    },
                    DeviceBody::Switch(s) => match key {
                        "vlan" => match v {
                            Value::Int(x) if (1..=4094).contains(&x) => {
                                s.ports[idx].vlan = Some(x as u16)
                            }
                            _ => self.bad("vlan", "expected a VLAN id from 1 to 4094", vspan),
                        },
                        "trunk" => {
                            let mut out = Vec::new();
                            for item in as_list(v) {
                                match item {
                                    Value::Int(x) if (1..=4094).contains(&x) => out.push(x as u16),
                                    _ => {
                                        return self.bad(
                                            "trunk",
                                            "expected VLAN ids from 1 to 4094",
                                            vspan,
                                        );
                                    }
                                }
                            }
                            s.ports[idx].trunk = out;
                        }
                        "addr" | "mac" | "mtu" => self.bad(
                            key,
                            "a switch port has no address; set it on the node's NIC",
                            kspan,
                        ),
                        _ => unknown(self, PORT_ATTRS, "a switch port"),
                    },
                }
            }
            Value::Device(d) => {
                let d = *d;
                if key == "nics" {
                    match v {
                        Value::Int(n) if (0..=4096).contains(&n) => {
                            while (self.devices[d].nic_count() as i64) < n && !self.limit_hit {
                                self.add_nic(d, vspan);
                            }
                        }
                        _ => self.bad("nics", "expected a whole number from 0 to 4096", vspan),
                    }
                    return;
                }
                match &mut self.devices[d].body {
                    DeviceBody::Switch(s) => match key {
                        "ports" => match v {
                            Value::Int(n) if (1..=65535).contains(&n) => {
                                s.max_ports = Some(n as u32)
                            }
                            _ => {
                                self.bad("ports", "expected a whole number from 1 to 65535", vspan)
                            }
                        },
                        "host" => match v {
                            Value::Str(h) => s.host = Some(h),
                            other => self.bad(
                                "host",
                                format!("expected a string, found {}", other.describe()),
                                vspan,
                            ),
                        },
                        _ => unknown(self, SWITCH_ATTRS, "a switch"),
                    },
                    DeviceBody::Node(n) => match key {
                        "clock" => match v {
                            Value::Str(c) if c == "virtual" => {
                                n.clock.get_or_insert_with(VirtualClock::default);
                            }
                            Value::Str(c) if c == "host" => n.clock = None,
                            other => self.bad(
                                "clock",
                                format!(
                                    "expected \"virtual\" or \"host\", found {}",
                                    other.describe()
                                ),
                                vspan,
                            ),
                        },
                        "clock_offset" => match num(&v) {
                            Some(s) if s.is_finite() && s.abs() <= 1e10 => {
                                n.clock.get_or_insert_with(VirtualClock::default).offset = s
                            }
                            _ => self.bad(
                                "clock_offset",
                                "expected seconds ahead of the host's clock, e.g. 3600 or -30",
                                vspan,
                            ),
                        },
                        "clock_rate" => match num(&v) {
                            Some(r) if (0.001..=1000.0).contains(&r) => {
                                n.clock.get_or_insert_with(VirtualClock::default).rate = r
                            }
                            _ => self.bad(
                                "clock_rate",
                                "expected guest seconds per host second, from 0.001 to 1000",
                                vspan,
                            ),
                        },
                        "faults" => match v {
                            Value::Str(f) if f == "on" => n.faults = true,
                            Value::Str(f) if f == "off" => n.faults = false,
                            other => self.bad(
                                "faults",
                                format!("expected \"on\" or \"off\", found {}", other.describe()),
                                vspan,
                            ),
                        },
                        "host" => match v {
                            Value::Str(h) => n.host = Some(h),
                            other => self.bad(
                                "host",
                                format!("expected a string, found {}", other.describe()),
                                vspan,
                            ),
                        },
                        "hostfs" => {
                            let mut out = Vec::new();
                            for item in as_list(v) {
                                match item {
                                    Value::Str(s) => match s.parse::<Hostfs>() {
                                        Ok(h) => out.push(h),
                                        Err(m) => return self.bad("hostfs", m, vspan),
                                    },
                                    other => {
                                        return self.bad(
                                            "hostfs",
                                            format!(
                                                "expected a string, found {}",
                                                other.describe()
                                            ),
                                            vspan,
                                        );
                                    }
                                }
                            }
                            n.hostfs = out;
                        }
                        "gateway" => {
                            let mut out = Vec::new();
                            for item in as_list(v) {
                                match item {
                                    Value::Str(s) => match s.parse() {
                                        Ok(ip) => out.push(ip),
                                        Err(_) => {
                                            return self.bad(
                                                "gateway",
                                                format!("`{s}` is not an IP address"),
                                                vspan,
                                            );
                                        }
                                    },
                                    other => {
                                        return self.bad(
                                            "gateway",
                                            format!(
                                                "expected an address, found {}",
                                                other.describe()
                                            ),
                                            vspan,
                                        );
                                    }
                                }
                            }
                            n.gateway = out;
                            self.devices[d].gateway_span = Some(vspan);
                        }
                        _ if KIND_ATTRS.contains(&key) => {
                            let mut cfg = CommonRef {
                                image: &mut n.image,
                                packages: &mut n.packages,
                                memory: &mut n.memory,
                                cpus: &mut n.cpus,
                                restart: &mut n.restart,
                            };
                            if let Err(m) = cfg.set(key, v) {
                                self.bad(key, m, vspan);
                            }
                        }
                        _ => unknown(self, NODE_ATTRS, "a node"),
                    },
                }
            }
            Value::Cable(c) => {
                let c = *c;
                let r = {
                    let cs = &mut self.cables[c];
                    let imp = &mut cs.impair;
                    match key {
                        "delay" => parse_str::<Micros>(v).map(|x| imp.delay = Some(x)),
                        "jitter" => parse_str::<Micros>(v).map(|x| imp.jitter = Some(x)),
                        "loss" => percent(v).map(|x| imp.loss = Some(x)),
                        "duplicate" => percent(v).map(|x| imp.duplicate = Some(x)),
                        "corrupt" => percent(v).map(|x| imp.corrupt = Some(x)),
                        "rate" => parse_str::<Rate>(v).map(|x| imp.rate = Some(x)),
                        "state" => parse_str::<LinkState>(v).map(|x| cs.state = x),
                        _ => return unknown(self, CABLE_ATTRS, "a cable"),
                    }
                };
                if let Err(m) = r {
                    self.bad(key, m, vspan);
                }
            }
            Value::Kind(KindRef::User(k)) => {
                if !KIND_ATTRS.contains(&key) {
                    return unknown(self, KIND_ATTRS, "a kind");
                }
                let kd = &mut self.kinds[*k].kind;
                let mut cfg = CommonRef {
                    image: &mut kd.image,
                    packages: &mut kd.packages,
                    memory: &mut kd.memory,
                    cpus: &mut kd.cpus,
                    restart: &mut kd.restart,
                };
                if let Err(m) = cfg.set(key, v) {
                    self.bad(key, m, vspan);
                }
            }
            Value::Poison => {}
            other => {
                self.err(
                    ErrorKind::WrongType {
                        expected: "a node, switch, NIC, cable or kind to set attributes on".into(),
                        found: other.describe().into(),
                    },
                    kspan,
                );
            }
        }
    }
}

fn parse_str<T: std::str::FromStr<Err = String>>(v: Value) -> Result<T, String> {
    match v {
        Value::Str(s) => s.parse(),
        other => Err(format!("expected a string, found {}", other.describe())),
    }
}

fn percent(v: Value) -> Result<Percent, String> {
    match v {
        Value::Int(i) => Percent::from_f64(i as f64),
        Value::Float(f) => Percent::from_f64(f),
        Value::Str(s) => s.parse(),
        other => Err(format!("expected a percentage, found {}", other.describe())),
    }
}

/// The parts of a node's or kind's configuration that attributes set.
struct CommonRef<'a> {
    image: &'a mut Option<String>,
    packages: &'a mut Vec<String>,
    memory: &'a mut Option<ByteSize>,
    cpus: &'a mut Option<f64>,
    restart: &'a mut Option<Restart>,
}

impl CommonRef<'_> {
    fn set(&mut self, key: &str, v: Value) -> Result<(), String> {
        match key {
            "image" => match v {
                Value::Str(s) => *self.image = Some(s),
                other => return Err(format!("expected a string, found {}", other.describe())),
            },
            "packages" => {
                let mut out = Vec::new();
                for item in as_list(v) {
                    match item {
                        Value::Str(s) => out.push(s),
                        other => {
                            return Err(format!(
                                "expected package names, found {}",
                                other.describe()
                            ));
                        }
                    }
                }
                *self.packages = out;
            }
            "memory" => *self.memory = Some(parse_str(v)?),
            "cpus" => match num(&v) {
                Some(n) if n > 0.0 && n <= 4096.0 => *self.cpus = Some(n),
                _ => return Err("expected a number of CPUs greater than 0, e.g. 0.5 or 2".into()),
            },
            "restart" => *self.restart = Some(parse_str(v)?),
            _ => return Err(format!("`{key}` cannot be set here")),
        }
        Ok(())
    }
}
