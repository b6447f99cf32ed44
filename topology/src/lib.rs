//! The vBET topology language: the paper's alloc/attach/plug/link and its extensions, parsed and validated into a lab model
