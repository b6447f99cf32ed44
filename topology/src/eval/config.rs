//! What runs in a node: `kind`, `file`, `service`, `sysctl` and `route`.

use super::*;

impl Eval<'_> {
    pub(super) fn kind_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        let Some((base, bspan)) = self.arity(c, &args, 1, 1, span) else {
            return Value::Poison;
        };
        let base = match base {
            Value::Kind(KindRef::Builtin(b)) if b.node_kind().is_some() => {
                b.node_kind().unwrap_or_default().to_string()
            }
            Value::Kind(KindRef::User(k)) if self.kinds[k].name.is_some() => {
                self.kinds[k].name.clone().unwrap_or_default()
            }
            other => {
                return self.err(
                    ErrorKind::WrongType {
                        expected: "a node kind to extend (host, router, firewall or a named kind)"
                            .into(),
                        found: other.describe().into(),
                    },
                    bspan,
                );
            }
        };
        self.kinds.push(KindState {
            name: None,
            span,
            kind: Kind {
                base,
                ..Kind::default()
            },
        });
        let v = Value::Kind(KindRef::User(self.kinds.len() - 1));
        self.apply_attrs(&v, span, attrs);
        v
    }

    /// The node or kind a file/service/route/sysctl goes to.
    fn config_target(&mut self, v: &Value, span: Span, what: &str) -> Option<Value> {
        match v {
            Value::Device(d) if !self.devices[*d].is_switch() => Some(v.clone()),
            Value::Kind(KindRef::User(_)) if what != "route" => Some(v.clone()),
            Value::Poison => None,
            other => {
                let expected = if what == "route" {
                    "a node"
                } else {
                    "a node or a kind made by kind()"
                };
                self.err(
                    ErrorKind::WrongType {
                        expected: format!("{expected} for {what}()"),
                        found: other.describe().into(),
                    },
                    span,
                );
                None
            }
        }
    }

    fn str_arg(&mut self, v: &(Value, Span), what: &str) -> Option<String> {
        match &v.0 {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) if what == "value" => Some(i.to_string()),
            other => {
                self.err(
                    ErrorKind::WrongType {
                        expected: format!("a string ({what})"),
                        found: other.describe().into(),
                    },
                    v.1,
                );
                None
            }
        }
    }

    /// Runs `f` on the sysctls, files and services of a node or user kind
    /// (`None` for other targets, which `config_target` has refused).
    fn with_config<R>(&mut self, target: &Value, f: impl FnOnce(ConfigRef<'_>) -> R) -> Option<R> {
        let cfg = match target {
            Value::Device(d) => match &mut self.devices[*d].body {
                DeviceBody::Node(n) => ConfigRef {
                    sysctls: &mut n.sysctls,
                    files: &mut n.files,
                    services: &mut n.services,
                },
                DeviceBody::Switch(_) => return None,
            },
            Value::Kind(KindRef::User(k)) => {
                let kd = &mut self.kinds[*k].kind;
                ConfigRef {
                    sysctls: &mut kd.sysctls,
                    files: &mut kd.files,
                    services: &mut kd.services,
                }
            }
            _ => return None,
        };
        Some(f(cfg))
    }

    pub(super) fn file_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if self.arity(c, &args, 2, 3, span).is_none() {
            return Value::Poison;
        }
        let Some(target) = self.config_target(&args[0].0, args[0].1, "file") else {
            return Value::Poison;
        };
        let Some(path) = self.str_arg(&args[1], "the path in the node") else {
            return Value::Poison;
        };
        let mut spec = FileSpec {
            path,
            content: None,
            source: None,
            mode: None,
        };
        if let Some(a) = args.get(2) {
            spec.content = self.str_arg(a, "the content");
        }
        for (a, v) in attrs {
            match (a.key.as_str(), v) {
                ("path", Value::Str(s)) => {
                    let p = self.rel_dir.join(&s);
                    spec.source = Some(p.to_string_lossy().into_owned());
                }
                ("mode", Value::Str(s)) => spec.mode = Some(s),
                ("mode", Value::Int(i)) => spec.mode = Some(format!("{i:04}")),
                (k @ ("path" | "mode"), v) => {
                    self.err(
                        ErrorKind::BadValue {
                            attr: k.into(),
                            message: format!("expected a string, found {}", v.describe()),
                        },
                        a.value.span,
                    );
                }
                (k, _) => {
                    let suggestion = suggest(k, ["path", "mode"]);
                    self.err(
                        ErrorKind::UnknownAttribute {
                            attr: k.into(),
                            target: "file()".into(),
                            suggestion,
                        },
                        a.key_span,
                    );
                }
            }
        }
        if spec.content.is_some() == spec.source.is_some() {
            return self.err(
                ErrorKind::WrongArgs {
                    func: "file".into(),
                    message: "give the content (a string or heredoc) or path=\"file\", not both or neither".into(),
                },
                span,
            );
        }
        if let Value::Device(d) = target {
            self.devices[d].file_spans.push((spec.path.clone(), span));
        }
        self.with_config(&target, |c| {
            c.files.retain(|f| f.path != spec.path);
            c.files.push(spec);
        });
        Value::Unit
    }

    pub(super) fn service_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if self.arity(c, &args, 3, 3, span).is_none() {
            return Value::Poison;
        }
        let Some(target) = self.config_target(&args[0].0, args[0].1, "service") else {
            return Value::Poison;
        };
        let (Some(name), Some(command)) = (
            self.str_arg(&args[1], "the service name"),
            self.str_arg(&args[2], "the command"),
        ) else {
            return Value::Poison;
        };
        let mut svc = Service {
            name,
            command,
            ready: None,
        };
        for (a, v) in attrs {
            match (a.key.as_str(), v) {
                ("ready", Value::Str(s)) => match s.parse::<Ready>() {
                    Ok(r) => svc.ready = Some(r),
                    Err(m) => {
                        self.err(
                            ErrorKind::BadValue {
                                attr: "ready".into(),
                                message: m,
                            },
                            a.value.span,
                        );
                    }
                },
                ("ready", v) => {
                    self.err(
                        ErrorKind::BadValue {
                            attr: "ready".into(),
                            message: format!("expected a string, found {}", v.describe()),
                        },
                        a.value.span,
                    );
                }
                (k, _) => {
                    let suggestion = suggest(k, ["ready"]);
                    self.err(
                        ErrorKind::UnknownAttribute {
                            attr: k.into(),
                            target: "service()".into(),
                            suggestion,
                        },
                        a.key_span,
                    );
                }
            }
        }
        self.with_config(&target, |c| {
            if let Some(s) = c.services.iter_mut().find(|s| s.name == svc.name) {
                *s = svc;
            } else {
                c.services.push(svc);
            }
        });
        Value::Unit
    }

    pub(super) fn sysctl_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if !self.no_attrs(c, &attrs) || self.arity(c, &args, 3, 3, span).is_none() {
            return Value::Poison;
        }
        let Some(target) = self.config_target(&args[0].0, args[0].1, "sysctl") else {
            return Value::Poison;
        };
        let (Some(k), Some(v)) = (
            self.str_arg(&args[1], "the key"),
            self.str_arg(&args[2], "value"),
        ) else {
            return Value::Poison;
        };
        self.with_config(&target, |c| c.sysctls.insert(k, v));
        Value::Unit
    }

    pub(super) fn route_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if self.arity(c, &args, 2, 3, span).is_none() {
            return Value::Poison;
        }
        let Some(Value::Device(d)) = self.config_target(&args[0].0, args[0].1, "route") else {
            return Value::Poison;
        };
        let Some(to) = self.str_arg(&args[1], "the destination prefix") else {
            return Value::Poison;
        };
        let to = match to.parse::<Prefix>() {
            Ok(p) => p,
            Err(m) => {
                return self.err(
                    ErrorKind::BadValue {
                        attr: "to".into(),
                        message: m,
                    },
                    args[1].1,
                );
            }
        };
        let mut route = Route {
            to,
            via: None,
            nic: None,
            metric: None,
        };
        let mut via = args.get(2).cloned();
        for (a, v) in attrs {
            match a.key.as_str() {
                "via" => via = Some((v, a.value.span)),
                "metric" => match v {
                    Value::Int(i) if (0..=u32::MAX as i64).contains(&i) => {
                        route.metric = Some(i as u32)
                    }
                    other => {
                        self.err(
                            ErrorKind::BadValue {
                                attr: "metric".into(),
                                message: format!(
                                    "expected a whole number, found {}",
                                    other.describe()
                                ),
                            },
                            a.value.span,
                        );
                    }
                },
                "nic" => match v {
                    Value::Nic(NicRef::At(nd, i)) if nd == d => route.nic = Some(i),
                    Value::Int(i) if i >= 1 && (i as u64) <= self.devices[d].nic_count() as u64 => {
                        route.nic = Some(i as u32)
                    }
                    _ => {
                        self.err(
                            ErrorKind::BadValue {
                                attr: "nic".into(),
                                message: "expected one of this node's NICs".into(),
                            },
                            a.value.span,
                        );
                    }
                },
                k => {
                    let suggestion = suggest(k, ["via", "metric", "nic"]);
                    self.err(
                        ErrorKind::UnknownAttribute {
                            attr: k.into(),
                            target: "route()".into(),
                            suggestion,
                        },
                        a.key_span,
                    );
                }
            }
        }
        if let Some((v, vspan)) = via {
            match v {
                Value::Str(s) => match s.parse() {
                    Ok(ip) => route.via = Some(ip),
                    Err(_) => {
                        self.err(
                            ErrorKind::BadValue {
                                attr: "via".into(),
                                message: format!("`{s}` is not an IP address"),
                            },
                            vspan,
                        );
                    }
                },
                other => {
                    self.err(
                        ErrorKind::BadValue {
                            attr: "via".into(),
                            message: format!("expected an address, found {}", other.describe()),
                        },
                        vspan,
                    );
                }
            }
        }
        if let DeviceBody::Node(n) = &mut self.devices[d].body {
            n.routes.push(route);
            self.devices[d].route_spans.push(span);
        }
        Value::Unit
    }
}

/// The sysctls, files and services of a node or kind.
struct ConfigRef<'a> {
    sysctls: &'a mut std::collections::BTreeMap<String, String>,
    files: &'a mut Vec<FileSpec>,
    services: &'a mut Vec<Service>,
}
