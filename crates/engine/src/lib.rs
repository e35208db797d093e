//! hako's daemonless engine (work in progress).
