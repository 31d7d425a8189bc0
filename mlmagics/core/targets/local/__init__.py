"""The local target (`local`): the scoring server as a detached process on 127.0.0.1.

    config = LocalWebservice.deploy_configuration(port=8890)
    service = Webservice.deploy_from_image(ws, "my-local", image, config)
    service.wait_for_deployment(show_output=True)     # Healthy in about a second for a small model

The server runs in its own session (process group), so it outlives the notebook kernel that
started it, an interrupted cell, or a kernel restart; `Webservice(ws, "my-local")` finds it
again from any process. Its files live in `<workspace>/services/<name>/`:

    server.log        everything the server printed, rotated at 10 MiB into server.log.1 ... .5
                      (get_logs() reads the tail across them)
    keys.json         the keys; the server re-reads it, so regen_key() needs no restart
    state.json        the server's own account of itself (port, workers, last reload)
    releases/<n>/     one folder per deployed version: app/ (the image's files, writable) with
                      azureml-models/<model>/<version>/ linking the registered artifacts

The server runs with umask 077, so what it writes (logs, state, collected data) is 0600.
What it collects (`collect_model_data`) goes to `<workspace>/collected/<name>/` instead: it
belongs to the workspace, so delete() keeps it (and says where) unless asked to remove it.

`update()` prepares a new release and asks the running server to reload (SIGHUP): the new
workers start and run init(); the server switches only if all of them are ready, on the
same port. If they fail, the previous version keeps serving and update() raises with the
reason and the traceback.
"""

from .config import LocalServiceDeploymentConfiguration
from .service import LocalWebservice

__all__ = ["LocalServiceDeploymentConfiguration", "LocalWebservice"]
