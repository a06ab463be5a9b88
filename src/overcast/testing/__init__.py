"""Test support shipped with the package: fakes, a fake clock, launchers for throwaway servers,
conformance suites. Imported by tests and benchmarks, never by a running component."""
