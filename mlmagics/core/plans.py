"""A dry run's result: what a deploy or an update would apply, written down instead of applied.

    plan = Webservice.deploy_from_image(ws, "mnist", image, AksWebservice.deploy_configuration(dry_run=True))
    plan.manifest_files           # [manifests/mnist.yaml, manifests/mnist-keys.secret.yaml] (for GitOps)
    plan.update(image=image_v2)   # the plan of the update instead
    print(plan.yaml())            # the objects, Secret data hidden

A plan is not a service: nothing runs, nothing is recorded in the workspace, `Webservice.list`
does not see it. It answers the calls a v1 notebook makes on what `deploy_from_image` returned
(`state`, `wait_for_deployment`, `update`, `delete`) by saying so, so that such a notebook runs
in dry-run mode unchanged. The target that can plan (Kubernetes) makes plans; faces show them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .errors import WebserviceException
from .progress import Progress


@dataclass
class DeploymentPlan:
    name: str  # the service it is the plan of
    compute_type: str
    image_id: str
    # the objects a deploy or update would apply; not in the repr: the planned Secret holds the keys (yaml() hides them)
    manifests: list[dict[str, Any]] = field(repr=False)
    manifest_files: list[Path]  # where they were written
    planned_scoring_uri: str | None = None  # where the service would answer once deployed
    keys: tuple[str, str] | None = field(repr=False, default=None)  # in the planned Secret, when key auth is on
    render_yaml: Callable[[list[dict[str, Any]], bool], str] = field(repr=False, default=lambda manifests, redact: "")
    replan: Callable[..., DeploymentPlan] | None = field(repr=False, default=None)  # the target's planner

    state: ClassVar[str] = "DryRun"  # what v1 code printing `service.state` sees
    scoring_uri: ClassVar[None] = None
    swagger_uri: ClassVar[None] = None

    @property
    def folder(self) -> Path | None:
        return self.manifest_files[0].parent if self.manifest_files else None

    def yaml(self, redact_secrets: bool = True) -> str:
        """The objects as one YAML stream (`kubectl apply -f` takes it); Secret data hidden unless asked."""
        return self.render_yaml(self.manifests, redact_secrets)

    def update(self, image: Any = None, **settings: Any) -> DeploymentPlan:
        """Plan the update instead (this plan then holds it, as a v1 service object would); returns it."""
        if self.replan is None:
            raise WebserviceException(f"the plan of {self.name} cannot be updated: its target plans no updates")
        settings.pop("dry_run", None)
        new = self.replan(image, **settings)
        self.image_id, self.manifests, self.manifest_files = new.image_id, new.manifests, new.manifest_files
        self.planned_scoring_uri, self.keys = new.planned_scoring_uri, new.keys
        return self

    def wait_for_deployment(self, show_output: bool = False, timeout_sec: float | None = None,
                            progress: Progress | None = None) -> None:  # fmt: skip
        """Nothing was deployed, so there is nothing to wait for: says so."""
        message = f"DryRun: nothing was deployed, nothing to wait for (manifests in {self.folder})"
        if progress is not None:
            progress.done(True, message)
        elif show_output:
            print(message)

    def delete(self, *args: Any, **kwargs: Any) -> None:
        """Nothing was deployed or recorded: nothing to delete (the written files stay; they are yours)."""

    def run(self, input_data: Any) -> Any:
        raise WebserviceException(f"{self.name} is a dry run: nothing was deployed to score with; deploy without dry_run")

    def get_logs(self, num_lines: int = 5000) -> str:
        return ""

    def get_keys(self) -> tuple[str, str]:
        """The keys the planned service would take (they are in the plan's Secret file, mode 0600)."""
        if self.keys is None:
            raise WebserviceException(f"the plan of {self.name} has key auth disabled")
        return self.keys

    def serialize(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "computeType": self.compute_type,
            "imageId": self.image_id,
            "manifests": [str(p) for p in self.manifest_files],
            "plannedScoringUri": self.planned_scoring_uri,
            "objects": [f"{m.get('kind')}/{m.get('metadata', {}).get('name')}" for m in self.manifests],
        }
