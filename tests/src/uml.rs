//! Real User-Mode Linux guests (Debian's `linux.uml`, the host's root
//! through hostfs) plugged into a switch with UML's own `daemon`
//! transport, ended when dropped.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::Spawned;
use crate::wait_for;

/// A UML guest running a shell script as its init.
#[derive(Debug)]
pub struct UmlGuest {
    /// The `linux.uml` process (and, in its group, the guest's processes).
    pub process: Spawned,
}

impl UmlGuest {
    /// Boots guest `name` whose `eth0` (MAC `mac`) plugs into the switch
    /// control socket `ctl`, with init running `body` after mounting
    /// /proc and bringing up `lo` and `eth0`; the guest powers off when
    /// `body` ends. `dir` holds its script, log and UML state.
    pub fn start(name: &str, dir: &Path, mac: &str, ctl: &Path, body: &str) -> UmlGuest {
        let script = dir.join(format!("{name}.init"));
        let text = format!(
            "#!/bin/sh\n\
             export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
             mount -t proc proc /proc\n\
             ip link set lo up\n\
             ip link set eth0 up\n\
             echo VBET-BOOTED\n\
             {body}\n\
             echo VBET-END\n\
             busybox poweroff -f\n"
        );
        std::fs::write(&script, text).expect("write guest init");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod guest init");
        let mut cmd = Command::new("linux.uml");
        cmd.arg(format!("umid={name}"))
            .arg(format!("uml_dir={}", dir.join("uml").display()))
            .args([
                "mem=64M",
                "root=/dev/root",
                "rootfstype=hostfs",
                "rootflags=/",
                "rw",
            ])
            .arg(format!("init={}", script.display()))
            .arg(format!("eth0=daemon,{mac},unix,{}", ctl.display()))
            .args(["con=null", "con0=fd:0,fd:1", "quiet"]);
        let process = Spawned::start(
            &format!("UML guest {name}"),
            cmd,
            &dir.join(format!("{name}.console")),
        );
        UmlGuest { process }
    }

    /// Waits until the console shows `marker`; returns the console text.
    pub fn wait_for_output(&self, marker: &str, timeout: Duration) -> String {
        wait_for(
            &format!("{} to print {marker:?}", self.process.name),
            timeout,
            || {
                let out = self.process.output();
                out.contains(marker).then_some(out)
            },
        )
    }
}
