"""Integration-test harness for tenant-guard: a real Envoy, a recording upstream, a JWKS
server and the keys and tokens the tests need. Nothing here knows about pytest; the fixtures
in ``tests/conftest.py`` wire it together."""
