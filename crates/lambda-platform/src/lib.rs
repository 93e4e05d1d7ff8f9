//! lambda-platform (being built).
