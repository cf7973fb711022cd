"""RefundBridge's domain: pure Python, no web framework, HTTP client, queue or SQL driver.

Everything here is a function of its inputs; I/O happens behind the ports in `core.ports`,
implemented by adapters in `store/`, `connectors/` and `workers/`.
"""
