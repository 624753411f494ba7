"""The Autobahn|Testsuite conformance run (see docs/conformance.md)."""
