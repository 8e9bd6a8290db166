"""Fault experiments (issue 16): a rollout over a simulated fleet with a fault injected mid-wave, checked
from outside the control plane. `python -m bench.faults SCENARIO`; docs/RELIABILITY.md has the table."""
