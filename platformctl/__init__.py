"""The on-prem AI platform installer: drives Ansible to install, check and verify the platform."""

__version__ = "0.1.0"
