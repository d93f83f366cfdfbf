//! Nothing: this crate's build script compiles the workspace's C plugins.
