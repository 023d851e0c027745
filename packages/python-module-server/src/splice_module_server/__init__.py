"""splice-orc's Python module-server: one Python module served over gRPC, speaking the Invoke
contract of proto/INVOKE.md, so that numpy, pandas and other Python modules are reachable from the
splice-orc client like the Node modules are. Run it as ``python -m splice_module_server``."""
