//! End-to-end tests of vBET that bring up real daemons, VMs and labs
