//! Labs brought up, operated and removed through the real `vbet` CLI and
//! orchestrator, with real switchd and vm-monitor processes.

use std::time::Duration;

use vbet_tests::lab::{LabHost, examples, lab_cgroups, processes_mentioning, vbet};
use vbet_tests::netns::Ping;
use vbet_tests::{require, unique_name, wait_for};

#[test]
fn paper_2_2_lab_comes_up_is_operated_and_leaves_nothing() {
    if !require(&["ping", "ip"]) {
        return;
    }
    let host = LabHost::start();
    let lab = unique_name("t");
    let file = examples().join("paper-2.2-switch.vbet");
    let up = host.vbet(&["up", file.to_str().unwrap(), "--name", &lab]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(String::from_utf8_lossy(&up.stderr).contains("is up"));

    let ls = host.vbet_ok(&["ls"]);
    assert!(ls.contains(&lab) && ls.contains("running"), "{ls}");
    let inspect = host.vbet_ok(&["inspect", &lab, "--json"]);
    assert_eq!(
        inspect.matches("\"state\": \"running\"").count(),
        1 + 3 + 1,
        "{inspect}"
    );

    let node = |n: &str| format!("{lab}/{n}");
    host.vbet_ok(&[
        "exec",
        &node("host1"),
        "--",
        "ping",
        "-c",
        "2",
        "-W",
        "2",
        "10.22.0.3",
    ]);
    let code = host
        .vbet(&["exec", &node("host2"), "--", "sh", "-c", "exit 7"])
        .status
        .code();
    assert_eq!(code, Some(7), "exit code not passed through");
    let hostname = host.vbet_ok(&["exec", &node("host2"), "--", "hostname"]);
    assert_eq!(hostname.trim(), "host2");

    // An unplugged cable: no carrier in the guest, no traffic.
    host.vbet_ok(&["link", "--lab", &lab, "host3:eth0", "down"]);
    let link = host.vbet_ok(&["exec", &node("host3"), "--", "ip", "link", "show", "eth0"]);
    assert!(link.contains("NO-CARRIER"), "{link}");
    let ping = host.vbet(&[
        "exec",
        &node("host1"),
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        "10.22.0.3",
    ]);
    assert!(!ping.status.success(), "traffic crossed an unplugged cable");
    host.vbet_ok(&["link", "--lab", &lab, "cable3", "up"]);
    host.vbet_ok(&[
        "exec",
        &node("host1"),
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.22.0.3",
    ]);

    // A delay on the cable shows in the round trip.
    host.vbet_ok(&[
        "link",
        "--lab",
        &lab,
        "switch1 host3",
        "impair",
        "--delay",
        "40ms",
    ]);
    let out = host.vbet_ok(&[
        "exec",
        &node("host1"),
        "--",
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "10.22.0.3",
    ]);
    let (min, _, _) = Ping::parse(&out)
        .rtt_ms
        .unwrap_or_else(|| panic!("no rtt in {out}"));
    assert!(min >= 80.0, "40 ms each way, but min RTT {min} ms");

    let down = host.vbet(&["down", &lab]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!host.run_root.join(&lab).exists(), "run dir left behind");
    assert_eq!(lab_cgroups(&lab), Vec::<std::path::PathBuf>::new());
    host.assert_no_lab_processes();
    assert!(!host.vbet_ok(&["ls"]).contains(&lab));
}

#[test]
fn an_invalid_topology_is_refused_with_its_place_and_nothing_starts() {
    if !require(&[]) {
        return;
    }
    let host = LabHost::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.vbet");
    std::fs::write(
        &file,
        "h1 = attach(alloc(host), alloc(NIC))\nlink(alloc(switch), hostt1)\n",
    )
    .unwrap();
    let out = host.vbet(&["up", file.to_str().unwrap(), "--name", "bad"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.vbet:2:"), "no file:line:col in {err}");
    assert!(err.contains("h1"), "no suggestion in {err}");
    assert!(
        !host.run_root.join("bad").exists(),
        "a refused lab left files"
    );
    host.assert_no_lab_processes();
}

#[test]
fn a_node_that_cannot_boot_rolls_the_whole_lab_back() {
    if !require(&[]) {
        return;
    }
    let host = LabHost::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.vbet");
    std::fs::write(
        &file,
        "sw = alloc(switch)\n\
         a = attach(alloc(host), alloc(NIC, addr = \"10.30.0.1/24\"))\n\
         b = attach(alloc(host), alloc(NIC, addr = \"10.30.0.2/24\"))\n\
         set(b, memory = \"1M\")\n\
         link(sw, a, b)\n",
    )
    .unwrap();
    let lab = unique_name("rb");
    let out = host.vbet(&["up", file.to_str().unwrap(), "--name", &lab]);
    assert!(!out.status.success(), "a 1 MiB VM booted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node b"),
        "the failing node is not named: {err}"
    );
    assert!(
        !host.run_root.join(&lab).exists(),
        "rollback left the run dir"
    );
    assert!(
        host.lab_processes().is_empty(),
        "rollback left {:?}",
        host.lab_processes()
    );
}

#[test]
fn vbet_starts_an_orchestrator_when_none_runs() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::Builder::new().prefix("vb").tempdir().unwrap();
    let run_root = dir.path().join("run");
    let out = vbet(&run_root, &["ls"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let pid: i32 = err
        .split("(pid ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("vbet did not say it started an orchestrator: {err}"));
    let stop = || {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    };
    if !out.status.success() {
        stop();
        panic!("vbet ls failed: {err}");
    }
    // A second call finds it running and says nothing about starting one.
    let again = vbet(&run_root, &["ls"]);
    stop();
    assert!(!String::from_utf8_lossy(&again.stderr).contains("started one"));
    wait_for("the orchestrator to exit", Duration::from_secs(10), || {
        processes_mentioning(&run_root).is_empty().then_some(())
    });
    assert!(
        !run_root.join("orchestrator.sock").exists(),
        "socket left behind"
    );
}

#[test]
fn two_labs_side_by_side_and_a_restarted_orchestrator_adopts_them() {
    if !require(&["ping"]) {
        return;
    }
    let mut host = LabHost::start();
    let file = examples().join("paper-2.2-switch.vbet");
    let (a, b) = (unique_name("a"), unique_name("b"));
    host.vbet_ok(&["up", file.to_str().unwrap(), "--name", &a]);
    host.vbet_ok(&["up", file.to_str().unwrap(), "--name", &b]);
    // The same addresses in both labs, kept apart by their namespaces.
    for lab in [&a, &b] {
        host.vbet_ok(&[
            "exec",
            &format!("{lab}/host1"),
            "--",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.22.0.2",
        ]);
    }
    host.vbet_ok(&["link", "--lab", &a, "cable2", "down"]);
    let cut = host.vbet(&[
        "exec",
        &format!("{a}/host1"),
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        "10.22.0.2",
    ]);
    assert!(!cut.status.success(), "lab {a}'s cable is down");
    host.vbet_ok(&[
        "exec",
        &format!("{b}/host1"),
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.22.0.2",
    ]);

    // The orchestrator is killed (SIGKILL); the labs stay up and a new one
    // adopts them.
    host.orchestrator.kill();
    let running: std::collections::BTreeSet<String> = host
        .lab_processes()
        .iter()
        .map(|p| {
            p.split_once(' ')
                .map_or(p.clone(), |(_, cmd)| cmd.to_owned())
        })
        .collect();
    assert_eq!(
        running.len(),
        2 * 4,
        "labs did not outlive the orchestrator: {running:?}"
    );
    host.restart_orchestrator();
    let ls = host.vbet_ok(&["ls"]);
    assert_eq!(ls.matches("running").count(), 2, "{ls}");
    host.vbet_ok(&[
        "exec",
        &format!("{b}/host3"),
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.22.0.1",
    ]);
    host.vbet_ok(&["down", &a]);
    host.vbet_ok(&["down", &b]);
    host.assert_no_lab_processes();
}

#[test]
fn vbet_shell_is_an_interactive_terminal_in_the_node() {
    if !require(&["script"]) {
        return;
    }
    let host = LabHost::start();
    let lab = unique_name("sh");
    let file = examples().join("paper-2.2-switch.vbet");
    host.vbet_ok(&["up", file.to_str().unwrap(), "--name", &lab]);
    // `script` gives vbet a terminal; the typed lines wait in the pty.
    let command = format!("{} shell {lab}/host2", vbet_tests::bin("vbet").display());
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("VBET_RUN_ROOT", &host.run_root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"tty; hostname\rexit 5\r")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/dev/pts/"),
        "no terminal in the node: {text}"
    );
    assert!(text.contains("host2"), "{text}");
    assert_eq!(
        out.status.code(),
        Some(5),
        "exit code not passed through: {text}"
    );
    host.vbet_ok(&["down", &lab]);
}

#[test]
fn a_killed_node_is_reported_reaped_and_started_again_by_its_restart_policy() {
    if !require(&["ping"]) {
        return;
    }
    let host = LabHost::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("restart.vbet");
    std::fs::write(
        &file,
        "sw = alloc(switch)\n\
         a = attach(alloc(host), alloc(NIC, addr = \"10.70.0.1/24\"))\n\
         b = attach(alloc(host), alloc(NIC, addr = \"10.70.0.2/24\"))\n\
         c = attach(alloc(host), alloc(NIC, addr = \"10.70.0.3/24\"))\n\
         set(b, restart = \"always\")\n\
         link(sw, a, b, c)\n",
    )
    .unwrap();
    let lab = unique_name("rs");
    host.vbet_ok(&["up", file.to_str().unwrap(), "--name", &lab]);
    let mut events_cmd = std::process::Command::new(vbet_tests::bin("vbet"));
    events_cmd
        .env("VBET_RUN_ROOT", &host.run_root)
        .args(["events", &lab]);
    let events = vbet_tests::process::Spawned::start(
        "vbet events",
        events_cmd,
        &dir.path().join("events.log"),
    );

    let lab_dir = host.run_root.join(&lab);
    let kill_monitor = |node: &str| {
        let spec = lab_dir.join(format!("specs/{node}.toml"));
        let monitor = processes_mentioning(&spec)
            .into_iter()
            .map(|(pid, _)| pid)
            .min()
            .unwrap_or_else(|| panic!("{node}'s monitor"));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(monitor as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    };
    // c has no restart policy: the orchestrator reaps what its monitor
    // left (the VMs of a lab have no reaper of their own).
    kill_monitor("c");
    wait_for("c's remains to be reaped", Duration::from_secs(20), || {
        let cgroups = lab_cgroups(&lab);
        let gone = !lab_dir.join("c.lock").exists()
            && !lab_dir.join("c.sock").exists()
            && !cgroups.iter().any(|d| d.ends_with(format!("{lab}.c")));
        gone.then_some(())
    });
    assert!(
        lab_cgroups(&lab)
            .iter()
            .any(|d| d.ends_with(format!("{lab}.a"))),
        "a's cgroup went too"
    );
    kill_monitor("b");
    let log = wait_for(
        "the crash and the restart to be reported",
        Duration::from_secs(20),
        || {
            let log = events.output();
            (log.contains("crashed") && log.contains("restarted")).then_some(log)
        },
    );
    assert!(log.contains("b "), "{log}");
    // The node is back, with its NIC plugged into the switch again.
    host.vbet_ok(&[
        "exec",
        &format!("{lab}/a"),
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.70.0.2",
    ]);
    assert!(host.vbet_ok(&["ls"]).contains("degraded"), "c stays down");
    drop(events);
    host.vbet_ok(&["down", &lab]);
    host.assert_no_lab_processes();
    assert_eq!(lab_cgroups(&lab), Vec::<std::path::PathBuf>::new());
}

#[test]
fn switches_joined_by_cables_carry_traffic_and_a_loop_is_refused() {
    if !require(&["ping"]) {
        return;
    }
    let host = LabHost::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trunks.vbet");
    std::fs::write(
        &file,
        "core = alloc(switch)\n\
         for s in 1..3 {\n\
           edge${s} = alloc(switch)\n\
           link(NIC(edge${s}), NIC(core), delay = \"10ms\")\n\
           h${s} = attach(alloc(host), alloc(NIC, addr = \"10.80.0.${s}/24\"))\n\
           link(edge${s}, h${s})\n\
         }\n",
    )
    .unwrap();
    let lab = unique_name("tr");
    host.vbet_ok(&["up", file.to_str().unwrap(), "--name", &lab]);
    // h1 -> edge1 -> core -> edge3 -> h3: two trunks, 10 ms each way each.
    let out = host.vbet_ok(&[
        "exec",
        &format!("{lab}/h1"),
        "--",
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "10.80.0.3",
    ]);
    let (min, _, _) = Ping::parse(&out)
        .rtt_ms
        .unwrap_or_else(|| panic!("no rtt in {out}"));
    assert!(min >= 40.0, "two impaired trunks, but min RTT {min} ms");
    host.vbet_ok(&["link", "--lab", &lab, "edge3 core", "down"]);
    let cut = host.vbet(&[
        "exec",
        &format!("{lab}/h1"),
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        "10.80.0.3",
    ]);
    assert!(
        !cut.status.success(),
        "traffic crossed a trunk that is down"
    );
    host.vbet_ok(&["link", "--lab", &lab, "edge3 core", "up"]);
    host.vbet_ok(&[
        "exec",
        &format!("{lab}/h1"),
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.80.0.3",
    ]);
    host.vbet_ok(&["down", &lab]);

    let looped = dir.path().join("loop.vbet");
    std::fs::write(
        &looped,
        "a = alloc(switch)\nb = alloc(switch)\nlink(NIC(a), NIC(b))\nlink(NIC(a), NIC(b))\n",
    )
    .unwrap();
    let out = host.vbet(&["up", looped.to_str().unwrap(), "--name", "loop"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loop"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    host.assert_no_lab_processes();
}

#[test]
fn fault_rules_pass_through_vbet_to_the_node() {
    if !require(&["cat", "head"]) {
        return;
    }
    let host = LabHost::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faults.vbet");
    std::fs::write(
        &file,
        "a = attach(alloc(host), alloc(NIC))\nb = attach(alloc(host), alloc(NIC))\nset(a, faults = \"on\")\n",
    )
    .unwrap();
    let lab = unique_name("ft");
    host.vbet_ok(&["up", file.to_str().unwrap(), "--name", &lab]);
    let a = format!("{lab}/a");
    let id = host.vbet_ok(&[
        "fault",
        "add",
        &a,
        "--syscall",
        "openat",
        "--command",
        "cat",
        "--errno",
        "EIO",
    ]);
    let id = id.trim().to_owned();
    let cat = host.vbet(&["exec", &a, "--", "cat", "/etc/hostname"]);
    assert!(!cat.status.success(), "cat was not faulted");
    assert!(
        String::from_utf8_lossy(&cat.stderr).contains("Input/output error"),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    assert_eq!(
        host.vbet_ok(&["exec", &a, "--", "head", "-1", "/etc/hostname"])
            .trim(),
        "a",
        "head was faulted too"
    );
    let ls = host.vbet_ok(&["fault", "ls", &a, "--json"]);
    assert!(
        ls.contains("\"openat\"") && !ls.contains("\"fired\":0"),
        "{ls}"
    );
    host.vbet_ok(&["fault", "rm", &a, &id]);
    assert_eq!(
        host.vbet_ok(&["exec", &a, "--", "cat", "/etc/hostname"])
            .trim(),
        "a"
    );
    // A node without faults = "on" refuses rules.
    let refused = host.vbet(&[
        "fault",
        "add",
        &format!("{lab}/b"),
        "--syscall",
        "openat",
        "--errno",
        "EIO",
    ]);
    assert!(
        !refused.status.success(),
        "a rule was set on a node without faults"
    );
    host.vbet_ok(&["down", &lab]);
}

#[test]
fn trace_and_clock_pass_through_vbet_to_the_node() {
    if !require(&["date", "echo"]) {
        return;
    }
    let host = LabHost::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("time.vbet");
    std::fs::write(
        &file,
        "a = attach(alloc(host, clock_offset = 3600), alloc(NIC))\nb = attach(alloc(host), alloc(NIC))\n",
    )
    .unwrap();
    let lab = unique_name("tc");
    host.vbet_ok(&["up", file.to_str().unwrap(), "--name", &lab]);
    let a = format!("{lab}/a");
    let guest_ahead = || {
        let guest: f64 = host
            .vbet_ok(&["exec", &a, "--", "date", "+%s"])
            .trim()
            .parse()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        guest - now
    };

    // The topology's offset, seen by `date` and by `vbet clock`.
    let ahead = guest_ahead();
    assert!((ahead - 3600.0).abs() < 5.0, "guest is {ahead} s ahead");
    let shown = host.vbet_ok(&["clock", &a, "--json"]);
    assert!(shown.contains("\"virtual\":true"), "{shown}");
    // Changed at run time.
    host.vbet_ok(&["clock", &a, "--offset", "-120"]);
    let ahead = guest_ahead();
    assert!((ahead + 120.0).abs() < 5.0, "guest is {ahead} s ahead");
    // A node without a virtual clock says how to get one.
    let refused = host.vbet(&["clock", &format!("{lab}/b"), "--offset", "10"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("clock"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Tracing: on, a streamed `write` by echo, off.
    host.vbet_ok(&["trace", &a, "on"]);
    let log = dir.path().join("trace.log");
    let mut cmd = std::process::Command::new(vbet_tests::bin("vbet"));
    cmd.env("VBET_RUN_ROOT", &host.run_root)
        .args(["trace", &a, "stream"]);
    let stream = vbet_tests::process::Spawned::start("vbet trace", cmd, &log);
    let seen = wait_for("echo's write in the trace", Duration::from_secs(20), || {
        host.vbet_ok(&["exec", &a, "--", "echo", "traced-by-vbet"]);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains(" echo write(") && l.contains("traced-by-vbet"))
            .map(str::to_owned)
    });
    assert!(seen.contains("= 15"), "{seen}");
    let off = host.vbet_ok(&["trace", &a, "off", "--json"]);
    assert!(off.contains("\"on\":false"), "{off}");
    drop(stream);
    host.vbet_ok(&["down", &lab]);
    host.assert_no_lab_processes();
}
