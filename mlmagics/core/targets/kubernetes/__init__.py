"""The Kubernetes target (v1's AKS): a service as a Deployment, Service, HPA, Secret and Ingress on any cluster.

    config = AksWebservice.deploy_configuration(autoscale_enabled=True, autoscale_target_utilization=30,
                                                autoscale_min_replicas=1, autoscale_max_replicas=4,
                                                context="prod", namespace="ml", ingress_host="ml.example.com")
    service = Webservice.deploy_from_image(ws, "mnist", image, config)   # pushes the image to config.registry
    service.wait_for_deployment(show_output=True)    # follows the rollout like `kubectl rollout status`
    service.update(image=Image(ws, id="myimage:2"))  # a rolling update; rolled back if the new version fails
    service.delete()                                 # every object it created, by label

    # No cluster? Write the manifests instead (for GitOps, or to read them):
    plan = Webservice.deploy_from_image(ws, "mnist", image, AksWebservice.deploy_configuration(dry_run=True))
    plan.manifest_files                              # [manifests/mnist.yaml, manifests/mnist-keys.secret.yaml]

mlmagics drives Kubernetes, it does not imitate it: the objects (`manifests.py`) are
applied with server-side apply (`cluster.py`), and a rollout's failures are read from
the pods and events the API server reports (`rollout.py`) — an image that cannot be
pulled, a crash loop, a failing init() or no room on any node end `wait_for_deployment()` within
a few seconds of Kubernetes knowing, with the pod's events and last log lines.

**Dry run** (`dry_run=True`, `%deploy aks NAME --dry-run`): nothing is applied and nothing is
recorded in the workspace — the result is a `DeploymentPlan` (core/plans.py), not a service: its
`manifests`/`manifest_files` hold what a deploy would apply. The YAML goes to
`manifests_dir` (default `./manifests`): `<name>.yaml` with every object but the keys, and
`<name>-keys.secret.yaml` (mode 0600) with the keys' Secret — keep that one out of git. An image not
pushed yet is named where `DockerWebservice.push_image(image, registry)` will put it (`<registry>/mlmagics/<image>:<version>`,
registry= in the configuration), else under `registry.invalid/`, a placeholder that never resolves.

**Keys** live in a Secret mounted as a directory; the server re-reads `keys.json` every second, so
`regen_key()` needs no restart. The kubelet refreshes mounted Secrets on its sync loop (up to about
a minute); mlmagics annotates the pods so that they sync at once.
"""

from .cluster import AksCompute, ComputeTarget, KubernetesCompute
from .config import AksServiceDeploymentConfiguration, KubernetesServiceDeploymentConfiguration
from .manifests import to_yaml
from .service import AksWebservice, KubernetesWebservice

__all__ = [
    "AksCompute",
    "AksServiceDeploymentConfiguration",
    "AksWebservice",
    "ComputeTarget",
    "KubernetesCompute",
    "KubernetesServiceDeploymentConfiguration",
    "KubernetesWebservice",
    "to_yaml",
]
