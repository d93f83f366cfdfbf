//! Placeholder crate: its build script compiles `echo.c` into `libecho_c.so`.
