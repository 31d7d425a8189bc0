"""The Docker target (v1's ACI): the image as a container on a Docker engine, with cpu/memory limits.

    config = AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=1)     # = DockerWebservice
    service = Webservice.deploy_from_image(ws, "aci-mnist-3", image, config)  # builds the image if needed
    service.wait_for_deployment(show_output=True)
    service.run(json.dumps({"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}))     # with the primary key (auth is on)
    service.update(image=Image(ws, id="myimage:2"))                           # same scoring URI, no request lost
    service.delete()                                                          # containers gone; the image stays

A service is two containers and a few volumes on the engine, all labelled with the workspace
and the service name (`docker ps --filter label=org.mlmagics.service=aci-mnist-3`):

    mlmagics-<service>-<ws>-port   the port holder: publishes 127.0.0.1:<port> (the scoring URI) and
                                   hands its listening socket to the server (serving/listener.py)
    mlmagics-<service>-<ws>-<n>    the server, release n: the image, with the cpu/memory limits,
                                   restart policy unless-stopped
    mlmagics-<service>-<ws>-run    a tmpfs volume: the hand-over socket and the servers' state files
    mlmagics-<service>-<ws>-<n>-app, -<n>-secrets
                                   release n's working directory (a copy of the image's app folder,
                                   which a v1 script may write to) and its settings and keys
    mlmagics-<service>-<ws>-data   the collected model data (collect_model_data): kept by delete(),
                                   which says where; delete(delete_collected_data=True) removes it

Both containers are locked down: a read-only root filesystem (the server writes only to its
volumes and to a tmpfs /tmp of half of memory_gb), uid 10001 (the image's user; the holder's
socket is 0600, so only that user may ask for the listening socket), no capabilities, no new
privileges, and a limit on processes and threads (PIDS_LIMIT): a fork bomb in run() stops there.

`update()` starts release n+1 next to release n on the same listening socket. Until its
`init()` has succeeded it accepts nothing, so release n answers every request; then release n
stops accepting and drains, and is removed. If release n+1 fails, it is removed and release n
never noticed. The scoring URI, the port and the keys stay the same for the service's life.
Keys and settings are copied into the server container (`/var/mlmagics`); a regenerated key
is copied into the running server, which reads it within a second.

If the engine goes away in the middle (dockerd restarted), the call fails with one line saying
so, and a deploy or update that failed half-way waits up to ENGINE_RETURN_WAIT seconds for the
engine to remove what it started — else the restart policy would bring it back as an orphan.
"""

from ...images import Image
from . import build
from .config import AciServiceDeploymentConfiguration, DockerServiceDeploymentConfiguration
from .service import AciWebservice, DockerWebservice

Image.built_by_targets.append(build.remove)  # an image's delete() removes the Docker image built from it

__all__ = ["AciServiceDeploymentConfiguration", "AciWebservice", "DockerServiceDeploymentConfiguration", "DockerWebservice"]
