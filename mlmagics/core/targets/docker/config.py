"""The Docker target's deploy configuration: v1's `AciWebservice.deploy_configuration` parameters."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from ...configs import DeploymentConfiguration, port_errors

# v1 parameters that only mean something on Azure: accepted so that v1 code runs, warned about, without effect
AZURE_ONLY = (
    "location",
    "dns_name_label",
    "enable_app_insights",
    "cmk_vault_base_url",
    "cmk_key_name",
    "cmk_key_version",
    "vnet_name",
    "subnet_name",
)

@dataclass
class DockerServiceDeploymentConfiguration(DeploymentConfiguration):
    """v1's `AciServiceDeploymentConfiguration`, plus where to publish the port (`host`, `port`)."""

    cpu_cores: float | None = None
    memory_gb: float | None = None
    port: int | None = None
    host: str | None = None
    ssl_enabled: bool | None = None
    ssl_cert_pem_file: str | None = None
    ssl_key_pem_file: str | None = None
    ssl_cname: str | None = None
    location: str | None = None
    dns_name_label: str | None = None
    enable_app_insights: bool | None = None
    cmk_vault_base_url: str | None = None
    cmk_key_name: str | None = None
    cmk_key_version: str | None = None
    vnet_name: str | None = None
    subnet_name: str | None = None

    compute_type = "Docker"
    # auth on by default here (v1's ACI had it off): a published container is reachable by others
    defaults = {**DeploymentConfiguration.defaults, "auth_enabled": True, "cpu_cores": 0.1, "memory_gb": 0.5, "host": "127.0.0.1"}
    positive = (*DeploymentConfiguration.positive, "cpu_cores", "memory_gb")

    def validation_errors(self) -> list[str]:
        errors = super().validation_errors()
        errors += port_errors(self.port)
        if self.host is not None:
            try:
                ipaddress.ip_address(self.host)
            except ValueError:
                errors.append(
                    f"host must be an IP address to publish the port on, such as 127.0.0.1 or 0.0.0.0, got {self.host!r}"
                )
        if self.ssl_enabled:
            if not (self.ssl_cert_pem_file and self.ssl_key_pem_file and self.ssl_cname):
                errors.append("SSL is enabled, you must provide a SSL certificate, key, and CNAME.")
            else:
                errors += [
                    f"{name} {path} does not exist."
                    for name, path in (("ssl_cert_pem_file", self.ssl_cert_pem_file), ("ssl_key_pem_file", self.ssl_key_pem_file))
                    if not os.path.isfile(path)
                ]
        return errors


AciServiceDeploymentConfiguration = DockerServiceDeploymentConfiguration
