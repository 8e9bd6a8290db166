"""The simulated machines of each site. `machine` holds one `Device`; `objects` the Node and Lease its
kubelet writes; `call_home` its register and heartbeat calls to the control plane; `lifecycle` the
`Devices` of one site (join, leases, faults, unbox, wipe). The device contract is in docs/SIMULATOR.md."""

from simulator.devices.lifecycle import TOKEN_ENV, WIPE_LABEL, Devices
from simulator.devices.machine import OS_IMAGE, Device, micro_time

__all__ = ["OS_IMAGE", "TOKEN_ENV", "WIPE_LABEL", "Device", "Devices", "micro_time"]
