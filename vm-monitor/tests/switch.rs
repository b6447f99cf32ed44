//! VMs plugged into switches: ours (switchd), Debian's uml_switch and
//! vde_switch. They ping each other, and a NIC plugs in again by itself
//! when its switch restarts. On switchd, two VMs agree on fast mode
//! (64 KiB TCP segments with a virtio-net header) and carry bulk TCP
//! intact; a UML guest, a plain peer, exchanges TCP with a VM through it
//! (switchd segments and completes checksums for it).

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
                .arg("--api")
                .arg(sw.join("api.sock"))
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
    // Bulk TCP arrives intact: in fast mode on switchd; on a plain switch
    // (which cuts frames over 1514 bytes) the NIC fell back to plain and
    // the guest's own stack segments.
    if which("socat").is_some() {
        receive_into_digest(&mut cb, 5002).await;
        let sent = send_random(&mut ca, 4 << 20, "10.79.0.2", 5002).await;
        assert_eq!(received_digest(&mut cb, 5002).await, sent, "{kind}");
    }

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

/// A User-Mode Linux guest with the host's root (hostfs) and `init` as its
/// init, its eth0 on the switch at `ctl`; its console is read until a
/// line with VBET-DONE.
/// Ended (its process group killed) when dropped, so a failed assertion
/// leaves no kernel behind.
struct UmlGuest {
    child: std::process::Child,
    reader: Option<std::thread::JoinHandle<String>>,
}

impl UmlGuest {
    fn start(uml: &Path, dir: &Path, init: &Path, mem: &str, mac: &str, ctl: &Path) -> UmlGuest {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        std::fs::set_permissions(init, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = Command::new(uml)
            .arg(format!("umid={}", unique("g")))
            .arg(format!("uml_dir={}", dir.display()))
            .arg(format!("mem={mem}"))
            .args(["root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw"])
            .arg(format!("init={}", init.display()))
            .arg(format!("eth0=daemon,{mac},unix,{}", ctl.display()))
            .args(["con=null", "con0=fd:0,fd:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group: a UML kernel is several host processes.
            .process_group(0)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
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
        UmlGuest {
            child,
            reader: Some(reader),
        }
    }

    /// Its console up to VBET-DONE (or what came within `timeout`); the
    /// guest is ended either way.
    async fn output(mut self, timeout: Duration) -> String {
        let reader = self.reader.take().unwrap();
        let deadline = std::time::Instant::now() + timeout;
        while !reader.is_finished() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(self);
        reader.join().unwrap()
    }
}

impl Drop for UmlGuest {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
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
    let guest = UmlGuest::start(
        &uml,
        dir.path(),
        &init,
        "64M",
        "02:00:00:81:00:02",
        &switch.ctl,
    );
    let output = guest.output(Duration::from_secs(60)).await;
    assert!(
        output.contains("VBET-PING-OK"),
        "the UML guest got no reply:\n{output}"
    );

    drop(client);
    assert!(vm.stop().success());
    drop(switch);
}

type Client =
    vbet_proto::vbet::vm::v1::vm_monitor_client::VmMonitorClient<tonic::transport::Channel>;

/// The first field of `sha256sum`'s output.
fn digest(out: &str) -> String {
    out.split_whitespace().next().unwrap_or_default().to_owned()
}

/// Starts a receiver on `port` in the VM that writes the SHA-256 of what
/// one TCP connection carries to `/tmp/rx.<port>`.
async fn receive_into_digest(vm: &mut Client, port: u16) {
    sh(
        vm,
        &format!(
            "(socat -u TCP-LISTEN:{port},reuseaddr - | sha256sum > /tmp/rx.{port}.part \
             && mv /tmp/rx.{port}.part /tmp/rx.{port}) >/dev/null 2>&1 &"
        ),
    )
    .await;
}

/// Sends `bytes` random bytes from the VM to `to:port` (retrying while
/// nobody listens yet); returns their SHA-256.
async fn send_random(vm: &mut Client, bytes: usize, to: &str, port: u16) -> String {
    digest(
        &sh(
            vm,
            &format!(
                "head -c {bytes} /dev/urandom > /tmp/tx.{port} && \
                 socat -u FILE:/tmp/tx.{port} TCP:{to}:{port},retry=100,interval=0.1 && \
                 sha256sum < /tmp/tx.{port}"
            ),
        )
        .await,
    )
}

/// The digest a receiver wrote, once it has.
async fn received_digest(vm: &mut Client, port: u16) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = exec(vm, &["cat", &format!("/tmp/rx.{port}")]).await;
        if out.status.code == 0 {
            return digest(&String::from_utf8_lossy(&out.stdout));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing received on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn switch_ports(dir: &Path) -> Vec<vbet_proto::vbet::switch::v1::Port> {
    use vbet_proto::vbet::switch::v1::{ListPortsRequest, switch_client::SwitchClient};
    let channel = vbet_proto::connect_unix(dir.join("sd/api.sock"))
        .await
        .expect("switchd API");
    SwitchClient::new(channel)
        .list_ports(ListPortsRequest {})
        .await
        .unwrap()
        .into_inner()
        .ports
}

#[tokio::test]
async fn two_vms_on_switchd_carry_bulk_tcp_intact_in_fast_mode() {
    if !can_run() {
        return;
    }
    if which("socat").is_none() {
        skip("socat is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(switch) = start_switch("switchd", dir.path()) else {
        skip("switchd is not built");
        return;
    };
    let lab = unique("fast");
    let (a, b) = (unique("a"), unique("b"));
    let (mut vm_a, mut ca) = TestVm::start(
        on_switch(&lab, &a, dir.path(), "10.85.0.1/24", &switch.ctl),
        dir.path(),
    )
    .await;
    let (mut vm_b, mut cb) = TestVm::start(
        on_switch(&lab, &b, dir.path(), "10.85.0.2/24", &switch.ctl),
        dir.path(),
    )
    .await;
    ping_until(&mut ca, "10.85.0.2", "switchd").await;

    receive_into_digest(&mut cb, 5000).await;
    let sent = send_random(&mut ca, 16 << 20, "10.85.0.2", 5000).await;
    assert_eq!(
        received_digest(&mut cb, 5000).await,
        sent,
        "a → b corrupted"
    );
    receive_into_digest(&mut ca, 5001).await;
    let sent = send_random(&mut cb, 8 << 20, "10.85.0.1", 5001).await;
    assert_eq!(
        received_digest(&mut ca, 5001).await,
        sent,
        "b → a corrupted"
    );

    // Both ports are fast, and superframes crossed: the average frame a
    // VM sent is larger than any frame of a 1500-byte MTU.
    let ports = switch_ports(dir.path()).await;
    assert_eq!(ports.len(), 2);
    for port in &ports {
        assert!(port.fast, "port {} is not in fast mode", port.id);
        let c = port.counters.unwrap();
        assert_eq!(c.drops.unwrap().offload, 0);
        if c.rx_bytes > 8 << 20 {
            assert!(
                c.rx_bytes / c.rx_frames.max(1) > 1514,
                "no superframes: {c:?}"
            );
        }
    }

    drop((ca, cb));
    assert!(vm_a.stop().success());
    assert!(vm_b.stop().success());
    drop(switch);
}

/// A UML guest (a plain version-3 peer) and a VM (fast) on one switchd
/// exchange TCP both ways, checked by SHA-256: what the VM sends as 64 KiB
/// segments reaches the guest segmented, with complete checksums.
#[tokio::test]
async fn vm_and_uml_guest_on_switchd_exchange_tcp_intact() {
    if !can_run() {
        return;
    }
    let (Some(uml), Some(_)) = (which("linux.uml"), which("socat")) else {
        skip("linux.uml or socat is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(switch) = start_switch("switchd", dir.path()) else {
        skip("switchd is not built");
        return;
    };
    let lab = unique("umlf");
    let name = unique("v");
    let (mut vm, mut client) = TestVm::start(
        on_switch(&lab, &name, dir.path(), "10.84.0.1/24", &switch.ctl),
        dir.path(),
    )
    .await;
    receive_into_digest(&mut client, 5001).await;

    // The guest receives on 5000 and prints the digest, then sends 2 MB
    // to the VM's 5001 and prints that digest. Scratch on a tmpfs.
    let init = dir.path().join("guest-init.sh");
    std::fs::write(
        &init,
        "#!/bin/sh\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t tmpfs tmp /tmp\n\
         ip link set lo up\n\
         ip link set eth0 up\n\
         ip addr add 10.84.0.2/24 dev eth0\n\
         echo VBET-RX $(socat -u TCP-LISTEN:5000,reuseaddr - | sha256sum)\n\
         head -c 2000000 /dev/urandom > /tmp/tx\n\
         socat -u FILE:/tmp/tx TCP:10.84.0.1:5001,retry=100,interval=0.1\n\
         echo VBET-TX $(sha256sum < /tmp/tx)\n\
         echo VBET-DONE\n\
         halt -f\n",
    )
    .unwrap();
    let guest = UmlGuest::start(
        &uml,
        dir.path(),
        &init,
        "96M",
        "02:00:00:84:00:02",
        &switch.ctl,
    );

    // Once the guest has plugged in: the VM's port is fast, the guest's
    // plain.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ports = switch_ports(dir.path()).await;
        if ports.len() == 2 {
            let fast: Vec<bool> = ports.iter().map(|p| p.fast).collect();
            assert!(fast.contains(&true) && fast.contains(&false), "{fast:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the guest never plugged in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let sent = send_random(&mut client, 4 << 20, "10.84.0.2", 5000).await;
    let port = switch_ports(dir.path()).await;
    let from_guest = received_digest(&mut client, 5001).await;
    let output = guest.output(Duration::from_secs(60)).await;
    let field = |tag: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .map(digest)
            .unwrap_or_else(|| panic!("the guest printed no {tag}:\n{output}"))
    };
    assert_eq!(field("VBET-RX "), sent, "VM → UML guest corrupted");
    assert_eq!(field("VBET-TX "), from_guest, "UML guest → VM corrupted");

    // Nothing was refused on the way, and the VM did send superframes
    // (which the guest could only take segmented).
    for port in &port {
        let c = port.counters.unwrap();
        assert_eq!(c.drops.unwrap().offload, 0);
        if port.fast {
            assert!(c.rx_bytes / c.rx_frames.max(1) > 1514, "{c:?}");
        }
    }

    drop(client);
    assert!(vm.stop().success());
    drop(switch);
}
