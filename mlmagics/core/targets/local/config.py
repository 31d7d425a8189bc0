"""The local target's deploy configuration: v1's `LocalWebservice.deploy_configuration(port)` and the shared settings."""

from __future__ import annotations

from dataclasses import dataclass

from ...configs import DeploymentConfiguration, port_errors


@dataclass
class LocalServiceDeploymentConfiguration(DeploymentConfiguration):
    port: int | None = None

    compute_type = "Local"

    def validation_errors(self) -> list[str]:
        return super().validation_errors() + port_errors(self.port)
