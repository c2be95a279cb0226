"""Launchers for many devices: msrun (Ascend/GPU/CPU), an HCCL rank table (Ascend 910), mpirun
(GPU). See ascend_port/launch/__main__.py."""
