//! VMs plugged into switches: ours (switchd), Debian's uml_switch and
//! vde_switch. They ping each other, and a NIC plugs in again by itself
//! when its switch restarts.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use vm_monitor::spec::{NicSpec, VmSpec, Wiring};

/// A switch process of a test, killed on drop.
struct Switch {
    child: Child,
    ctl: PathBuf,
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // uml_switch leaves its socket behind.
        let _ = std::fs::remove_file(&self.ctl);
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.exists())
}

/// The workspace's switchd binary, if it has been built.
fn switchd() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/debug/deps/switch-HASH → target/debug/switchd
    let p = exe.parent()?.parent()?.join("switchd");
    p.exists().then_some(p)
}

fn start_switch(kind: &str, dir: &Path) -> Option<Switch> {
    let (child, ctl, wait_for) = match kind {
        "uml_switch" => {
            let bin = which("uml_switch")?;
            let ctl = dir.join("uml.ctl");
            let child = Command::new(bin)
                .arg("-unix")
                .arg(&ctl)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .ok()?;
            (child, ctl.clone(), ctl)
        }
        "vde_switch" => {
            let bin = which("vde_switch")?;
            let sw = dir.join("vde");
            // vde_switch exits when its stdin closes: hold a pipe.
            let child = Command::new(bin)
                .arg("-s")
                .arg(&sw)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .ok()?;
            (child, sw.clone(), sw.join("ctl"))
        }
        "switchd" => {
            let bin = switchd()?;
            let sw = dir.join("sd");
            std::fs::create_dir_all(&sw).ok()?;
            let child = Command::new(bin)
                .arg("-s")
                .arg(&sw)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            (child, sw.join("ctl"), sw.join("ctl"))
        }
        _ => unreachable!(),
    };
    let switch = Switch { child, ctl };
    poll(&format!("{kind} socket"), Duration::from_secs(10), || {
        // The socket file exists from bind(2); connecting proves listen(2).
        std::os::unix::net::UnixStream::connect(&wait_for)
            .ok()
            .map(drop)
    });
    Some(switch)
}

fn on_switch(lab: &str, name: &str, dir: &Path, addr: &str, ctl: &Path) -> VmSpec {
    let mut s = spec(lab, name, dir);
    s.nics.push(NicSpec {
        index: 0,
        mac: None,
        addresses: vec![addr.into()],
        wiring: Wiring::Switch { ctl: ctl.into() },
    });
    s
}

async fn ping_until(
    client: &mut vbet_proto::vbet::vm::v1::vm_monitor_client::VmMonitorClient<
        tonic::transport::Channel,
    >,
    to: &str,
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let out = exec(client, &["ping", "-c", "1", "-W", "1", to]).await;
        if out.status.code == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: no reply from {to}"
        );
    }
}

async fn two_vms_ping_over(kind: &str, restart: bool) {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(mut switch) = start_switch(kind, dir.path()) else {
        skip(&format!("{kind} is not available"));
        return;
    };
    let lab = unique("sw");
    let (a, b) = (unique("a"), unique("b"));
    let ctl = switch.ctl.clone();
    let (mut vm_a, mut ca) = TestVm::start(
        on_switch(&lab, &a, dir.path(), "10.79.0.1/24", &ctl),
        dir.path(),
    )
    .await;
    let (mut vm_b, mut cb) = TestVm::start(
        on_switch(&lab, &b, dir.path(), "10.79.0.2/24", &ctl),
        dir.path(),
    )
    .await;
    ping_until(&mut ca, "10.79.0.2", kind).await;
    ping_until(&mut cb, "10.79.0.1", kind).await;

    if restart {
        let mut events = ca
            .events(vbet_proto::vbet::vm::v1::EventsRequest {})
            .await
            .unwrap()
            .into_inner();
        let _ = switch.child.kill();
        let _ = switch.child.wait();
        let _ = std::fs::remove_file(&switch.ctl);
        drop(switch);
        // Unplugged: the guest loses its carrier, the API says so.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !sh(&mut ca, "ip link show eth0")
            .await
            .contains("NO-CARRIER")
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "carrier stayed up without a switch"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = ca
            .status(vbet_proto::vbet::vm::v1::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(!status.nics[0].attached);
        switch = start_switch(kind, dir.path()).expect("the switch starts again");
        ping_until(&mut ca, "10.79.0.2", "after the switch restarted").await;
        assert!(
            !sh(&mut ca, "ip link show eth0")
                .await
                .contains("NO-CARRIER")
        );
        // The event stream told: down, then up.
        use vbet_proto::vbet::port::v1::LinkState;
        use vbet_proto::vbet::vm::v1::event::Kind;
        let mut seen = Vec::new();
        while let Ok(Ok(Some(e))) =
            tokio::time::timeout(Duration::from_secs(5), events.message()).await
        {
            if let Some(Kind::LinkChanged(l)) = e.kind {
                seen.push(l.state);
                if l.state == LinkState::Up as i32 {
                    break;
                }
            }
        }
        assert_eq!(seen, vec![LinkState::Down as i32, LinkState::Up as i32]);
    }

    drop((ca, cb));
    assert!(vm_a.stop().success());
    assert!(vm_b.stop().success());
    drop(switch);
}

#[tokio::test]
async fn two_vms_on_uml_switch_and_its_restart() {
    two_vms_ping_over("uml_switch", true).await;
}

#[tokio::test]
async fn two_vms_on_vde_switch() {
    two_vms_ping_over("vde_switch", false).await;
}

#[tokio::test]
async fn two_vms_on_switchd() {
    two_vms_ping_over("switchd", false).await;
}

/// A real peer: a User-Mode Linux guest on the same uml_switch pings the
/// VM.
#[tokio::test]
async fn vm_and_uml_guest_on_uml_switch() {
    if !can_run() {
        return;
    }
    let Some(uml) = which("linux.uml") else {
        skip("linux.uml is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(switch) = start_switch("uml_switch", dir.path()) else {
        skip("uml_switch is not available");
        return;
    };
    let lab = unique("uml");
    let name = unique("v");
    let (mut vm, client) = TestVm::start(
        on_switch(&lab, &name, dir.path(), "10.81.0.1/24", &switch.ctl),
        dir.path(),
    )
    .await;

    // The guest's init: with a hostfs root, scratch must stay off the host
    // (only /proc and /sys are mounted, both virtual).
    let init = dir.path().join("guest-init.sh");
    std::fs::write(
        &init,
        "#!/bin/sh\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         ip link set lo up\n\
         ip link set eth0 up\n\
         ip addr add 10.81.0.2/24 dev eth0\n\
         i=0\n\
         while [ $i -lt 20 ]; do\n\
           if ping -c 1 -W 1 10.81.0.1 >/dev/null 2>&1; then echo VBET-PING-OK; break; fi\n\
           i=$((i+1))\n\
         done\n\
         echo VBET-DONE\n\
         halt -f\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    let umid = unique("g");
    let mut guest = Command::new(uml);
    guest
        .arg(format!("umid={umid}"))
        .arg(format!("uml_dir={}", dir.path().display()))
        .arg("mem=64M")
        .args(["root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw"])
        .arg(format!("init={}", init.display()))
        .arg(format!(
            "eth0=daemon,02:00:00:81:00:02,unix,{}",
            switch.ctl.display()
        ))
        .args(["con=null", "con0=fd:0,fd:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    {
        use std::os::unix::process::CommandExt;
        // Its own process group: a UML kernel is several host processes.
        guest.process_group(0);
    }
    let mut guest = guest.spawn().unwrap();
    let pgid = guest.id() as i32;
    let stdout = guest.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("VBET-DONE") {
                break;
            }
        }
        seen
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = guest.wait();
    let output = reader.join().unwrap();
    assert!(
        output.contains("VBET-PING-OK"),
        "the UML guest got no reply:\n{output}"
    );

    drop(client);
    assert!(vm.stop().success());
    drop(switch);
}
