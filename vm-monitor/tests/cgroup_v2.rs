//! The cgroup v2 code path on the host's unified hierarchy (on this
//! machine's hybrid layout it has no controllers, so no limits: create,
//! join, freeze, thaw, remove).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use vm_monitor::cgroup::{Cgroup, Hierarchy};
use vm_monitor::spec::Resources;

#[test]
fn v2_create_join_freeze_remove() {
    if !can_run() {
        return;
    }
    let unified = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("cgroup.controllers").exists());
    let Some(root) = unified else {
        skip("no cgroup v2 hierarchy");
        return;
    };
    let cg = Cgroup::new(Hierarchy::V2(root.to_owned()), &unique("v2."));
    cg.create(&Resources::default()).unwrap();
    let dir = cg.dirs().remove(0);
    assert!(dir.is_dir());

    // Cleans up even when an assertion fails.
    struct Guard(Cgroup, std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.set_frozen(false);
            let _ = self.1.kill();
            let _ = self.1.wait();
            let _ = self.0.remove(Duration::from_secs(5));
        }
    }
    let sleeper = std::process::Command::new("sleep")
        .arg("100")
        .spawn()
        .unwrap();
    let mut guard = Guard(cg.clone(), sleeper);
    let sleeper = &mut guard.1;
    std::fs::write(dir.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    assert!(cg.in_use());
    cg.set_frozen(true).unwrap();
    assert!(
        std::fs::read_to_string(dir.join("cgroup.events"))
            .unwrap()
            .contains("frozen 1")
    );
    cg.set_frozen(false).unwrap();
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    poll("the cgroup to empty", Duration::from_secs(5), || {
        (!cg.in_use()).then_some(())
    });
    assert!(cg.remove(Duration::from_secs(5)).is_empty());
    assert!(!dir.exists());
}
