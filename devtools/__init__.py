"""Tools for tests and the benchmark (private servers, fakes): never imported by calls/."""
