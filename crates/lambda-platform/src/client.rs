//! A small SigV4-signing client for the platform's API, used by the CLI and tests.
