//! Root file system images and per-VM copy-on-write layers for vBET
