//! The vBET switch daemon: a learning Ethernet switch on the uml_switch/VDE port protocol
