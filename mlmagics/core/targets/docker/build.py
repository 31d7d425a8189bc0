"""Docker images from mlmagics images: build them (output streamed live), push them, remove them.

    tag = build(image, progress=TextProgress())      # 'mlmagics/myimage:2' (DockerWebservice.build_image)
    push(image, "127.0.0.1:5000")                     # '127.0.0.1:5000/mlmagics/myimage:2' (DockerWebservice.push_image)

The Dockerfile goes from what changes least to what changes most, so that a new version
of an image that only edits `score.py` rebuilds in a second or two from the cache:

    base image (a setting) -> [Java, for runtime="spark-py"] -> a venv and a non-root user
    -> the scoring runtime's requirements -> the image's pinned requirements
    -> the scoring runtime (mlmagics/__init__.py, _version.py and serving/, nothing else of mlmagics)
    -> the models -> settings (ENV, USER, HEALTHCHECK, CMD) -> the script and its files

The image runs as uid 10001, answers `docker run -p 8000:5001 IMAGE` on its own, carries a
HEALTHCHECK and labels with the mlmagics ids, and contains no Jupyter, widgets, docker or
kubernetes packages (notebook tooling found in an image's requirements is left out, with a
warning). Builds use the classic builder through the engine API with `network_mode=host`,
so pip inside the build reaches the package index the way the host does.

It is made to run on a read-only root filesystem (both targets run it so): Python code is
compiled at build time, HOME and TMPDIR are /tmp (a tmpfs or an emptyDir), and the app folder
— the script's working directory, which v1 scripts may write to — is small enough to be copied
into a writable volume per container: the models live in /opt/mlmagics/models, and
`/var/azureml-app/azureml-models` (v1's path, AZUREML_MODEL_DIR) is a link to them.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import tempfile
import time
from collections import deque
from typing import IO, Any

from ...._version import __version__
from ...environments import installed_version, normalise, split_requirement
from ...errors import ImageException, UserError
from ...images import Image
from ...progress import NullProgress, Progress
from ...workspace import now
from ..container import APP, DATA_DIR, MODELS, PORT, RUNTIME, SECRETS, SERVING, STATE_FILE, UID, VENV, image_repo
from .engine import LABEL, base_image, engine, sdk, short_error

HEALTH_TIMING = {"interval": 10, "timeout": 5, "start_period": 60}  # seconds; unhealthy after 3 failed checks in a row
HEALTH_RETRIES = 3
# The base image's pip installs into the venv (pip >= 22.3): the image carries no pip or setuptools (~20 MB).
PIP = f"python3 -m pip --python {VENV}/bin/python"

# Notebook tooling has no business in a scoring image (conda exports of a notebook environment list it).
NOTEBOOK_ONLY = {
    "ipykernel",
    "ipython",
    "ipywidgets",
    "jupyter",
    "jupyter-client",
    "jupyter-core",
    "jupyter-server",
    "jupyterlab",
    "jupyterlab-widgets",
    "mlmagics",
    "nbclient",
    "nbconvert",
    "nbformat",
    "notebook",
    "papermill",
    "widgetsnbextension",
}
_LAYER_KINDS = (  # how `docker history` lines are accounted for in the size report, first match wins
    ("scoring runtime", ("runtime-requirements", f"in {RUNTIME}", f"compileall -q {RUNTIME}")),
    ("requirements", ("/opt/mlmagics/requirements.txt",)),
    ("models", (f"in {MODELS}",)),
    ("script and files", (f"in {APP}",)),
    ("java", ("jre-headless",)),
    ("venv and user", ("-m venv",)),
)


def tag_for(image: Image) -> str:
    return f"{image_repo()}/{image.name}:{image.version}"


def requirements_for(image: Image) -> tuple[list[str], list[str]]:
    """(lines pip installs into the image, notebook-only lines left out)."""
    kept: list[str] = []
    left_out: list[str] = []
    for line in image.environment.requirements:
        name = "" if line.startswith(("-", "git+", "http")) else normalise(split_requirement(line)[0])
        (left_out if name in NOTEBOOK_ONLY or name.startswith("jupyter") else kept).append(line)
    if image.runtime == "spark-py" and "pyspark" not in {normalise(split_requirement(r)[0]) for r in kept if r[0].isalnum()}:
        version = installed_version("pyspark")
        kept.append(f"pyspark=={version}" if version else "pyspark")
    return kept, left_out


def runtime_requirements() -> tuple[str, str]:
    """(the runtime's requirements pinned to the versions tested here, its ranges as pip constraints)."""
    ranges = (SERVING / "requirements.txt").read_text()
    pinned = []
    for raw in ranges.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, _, marker = line.partition(";")
        name = split_requirement(requirement)[0]
        version = installed_version(name)
        pinned.append((f"{name}=={version}" if version else requirement.strip()) + (f"; {marker.strip()}" if marker else ""))
    return "\n".join(pinned) + "\n", ranges


def model_dir(image: Image) -> str | None:
    """AZUREML_MODEL_DIR as later v1 SDKs set it: the version folder of a single model, else the models folder."""
    models = image.model_ids
    if not models:
        return None
    if len(models) == 1:
        name, version = models[0].split(":")
        return f"{APP}/azureml-models/{name}/{version}"
    return f"{APP}/azureml-models"


def server_command(state_file: str = STATE_FILE) -> list[str]:
    """The image's CMD: the scoring server on the container port, keeping its state where the health check reads it."""
    return ["python", "-m", "mlmagics.serving", "--host", "0.0.0.0", "--port", str(PORT), "--state-file", state_file]


def health_command(state_file: str = STATE_FILE) -> list[str]:
    """The image's HEALTHCHECK command (serving/health.py) for a server keeping its state in `state_file`."""
    return ["python", "-m", "mlmagics.serving.health", state_file]


def healthcheck(state_file: str) -> dict[str, Any]:
    """The image's HEALTHCHECK for a server keeping its state in `state_file`, as the engine API takes it."""
    timing = {k: v * 1_000_000_000 for k, v in HEALTH_TIMING.items()}  # the API counts nanoseconds
    return {"test": ["CMD", *health_command(state_file)], "retries": HEALTH_RETRIES, **timing}


def dockerfile(image: Image, base: str) -> str:
    """The Dockerfile of `image` built FROM `base` (see the module docstring for the order)."""
    requirements, _ = requirements_for(image)
    env = {
        "PATH": f"{VENV}/bin:$PATH",  # the engine expands $PATH: the base image's own PATH stays behind the venv
        "PYTHONPATH": RUNTIME,
        # the root filesystem is read-only where it runs: libraries' caches and temporary files go to /tmp
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "AML_APP_ROOT": APP,
        "AZUREML_ENTRY_SCRIPT": image.execution_script,
    }
    models = model_dir(image)
    if models:
        env["AZUREML_MODEL_DIR"] = models
    lines = [
        f"FROM {base}",
        "ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore",
    ]
    if image.runtime == "spark-py":  # pyspark needs a Java runtime; slim images lack the man folder its installer expects
        lines.append(
            "RUN mkdir -p /usr/share/man/man1 && apt-get update && apt-get install -y --no-install-recommends "
            "default-jre-headless && rm -rf /var/lib/apt/lists/*"
        )
    lines += [
        f"RUN groupadd --gid {UID} azureml && useradd --uid {UID} --gid {UID} --no-create-home --shell /usr/sbin/nologin azureml"
        f" && python3 -m venv --without-pip {VENV} && mkdir -p {APP} {MODELS} {SECRETS} {DATA_DIR}"
        f" && ln -s {MODELS} {APP}/azureml-models && chown {UID}:{UID} {APP} {DATA_DIR}",
        "COPY runtime-requirements.txt runtime-constraints.txt /opt/mlmagics/",
        f"RUN {PIP} install -r /opt/mlmagics/runtime-requirements.txt",
    ]
    if requirements:
        lines += [
            "COPY requirements.txt /opt/mlmagics/requirements.txt",
            f"RUN {PIP} install -r /opt/mlmagics/requirements.txt -c /opt/mlmagics/runtime-constraints.txt",
        ]
    # compiled once here: the server starts faster, which matters under a cpu_cores=0.1 limit
    lines += [f"COPY runtime/ {RUNTIME}/", f"RUN {VENV}/bin/python -m compileall -q {RUNTIME}"]
    if image.model_ids:
        lines.append(f"COPY azureml-models/ {MODELS}/")
    lines += [
        "ENV " + " ".join(f"{k}={json.dumps(v)}" for k, v in env.items()),
        f"USER {UID}:{UID}",
        f"WORKDIR {APP}",
        f"EXPOSE {PORT}",
        "HEALTHCHECK "
        + " ".join(f"--{k.replace('_', '-')}={v}s" for k, v in HEALTH_TIMING.items())
        + f" --retries={HEALTH_RETRIES} CMD {json.dumps(health_command())}",
        f"CMD {json.dumps(server_command())}",
        f"COPY --chown={UID}:{UID} app/ {APP}/",
        "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels_for(image).items()),
    ]
    return "\n".join(lines) + "\n"


def labels_for(image: Image) -> dict[str, str]:
    return {
        f"{LABEL}.image": image.id,
        f"{LABEL}.workspace": image.workspace.identity,
        f"{LABEL}.models": ",".join(image.model_ids),
        f"{LABEL}.runtime": image.runtime,
        f"{LABEL}.version": __version__,
    }


def recipe_digest(image: Image, base: str) -> str:
    """What the built image is a function of, besides the files: its Dockerfile (the layout the targets expect)."""
    return hashlib.sha256(dockerfile(image, base).encode()).hexdigest()[:16]


def _normalised(mode_file: int, mode_dir: int):
    def fix(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if "__pycache__" in info.name.split("/") or info.name.endswith(".pyc"):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = mode_dir if info.isdir() else mode_file
        return info

    return fix


def write_context(image: Image, base: str, out: IO[bytes]) -> str:
    """Write the build context (a tar) of `image` to `out`; returns the Dockerfile."""
    recipe = dockerfile(image, base)
    requirements, _ = requirements_for(image)
    pinned, ranges = runtime_requirements()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def text(name: str, content: str) -> None:
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))

        text("Dockerfile", recipe)
        text("runtime-requirements.txt", pinned)
        text("runtime-constraints.txt", ranges)
        text("requirements.txt", "\n".join(requirements) + "\n")
        runtime_files = _normalised(0o644, 0o755)
        for name in ("__init__.py", "_version.py"):  # the package's root: cheap, imports nothing else of mlmagics
            tar.add(SERVING.parent / name, f"runtime/mlmagics/{name}", filter=runtime_files)
        tar.add(SERVING, "runtime/mlmagics/serving", filter=runtime_files)
        for model in image.models:  # read-only in the image too, as in the workspace
            tar.add(
                model.path, f"azureml-models/{model.name}/{model.version}/{model.path.name}", filter=_normalised(0o444, 0o555)
            )
        tar.add(image.app_dir, "app", filter=_normalised(0o644, 0o755))
    return recipe


def _engine_image(client: Any, ref: str) -> Any | None:
    try:
        return client.images.get(ref)
    except sdk().errors.ImageNotFound:
        return None


def is_built(image: Image, client: Any | None = None) -> bool:
    """True when the Docker image recorded for `image` is still on the engine."""
    built = image.build_info.get("id")
    return built is not None and _engine_image(client or engine(), built) is not None


def build(
    image: Image,
    base_image_name: str | None = None,
    progress: Progress | None = None,
    no_cache: bool = False,
) -> str:
    """Build the Docker image of `image` unless it is built already; returns its tag.

    Streams the build's output into `progress` line by line; a failed build raises
    ImageException naming the failing step with the last lines of its output.
    """
    progress = progress or NullProgress()
    client = engine(timeout=3600)
    requested = base_image_name or image.spec.get("base_image")
    base = base_image(image.environment.python, requested)
    tag = tag_for(image)
    info = image.build_info
    recipe = recipe_digest(image, base)
    # an image built by another mlmagics (another layout) or from another base is built again
    if not no_cache and is_built(image, client) and info.get("base_image") == base and info.get("recipe") == recipe:
        if _engine_image(client, info["tag"]) is None:  # the tag was removed by hand: put it back
            client.api.tag(info["id"], *info["tag"].rsplit(":", 1))
        progress.log(f"{info['tag']} is built already ({info['id'][7:19]}, {info.get('size', 0) / 1e6:.1f} MB)")
        return info["tag"]
    _, left_out = requirements_for(image)
    for line in left_out:
        progress.log(f"warning: {line} is notebook tooling, not installed in the image")
    image.folder.mkdir(parents=True, exist_ok=True)  # absent on a machine that did not create the image
    log_path = image.folder / "docker-build.log"
    started = time.monotonic()
    with tempfile.TemporaryFile() as context, open(log_path, "w", encoding="utf-8") as log:
        written = write_context(image, base, context)
        (image.folder / "Dockerfile").write_text(written)
        context.seek(0)
        steps = sum(1 for line in written.splitlines() if line and not line.startswith("#"))
        progress.stage(f"Building Docker image {tag} from {base}", total=steps)
        image_id = _run_build(client, context, tag, no_cache, progress, log, base)
    built = client.images.get(image_id)
    sizes = layer_sizes(built)
    took = time.monotonic() - started
    image.set_build_info(
        tag=tag,
        id=built.id,
        base_image=base,
        recipe=recipe,
        size=built.attrs["Size"],
        layers=sizes,
        log=str(log_path),
        dockerfile=str(image.folder / "Dockerfile"),
        built_time=now(),
        build_seconds=round(took, 2),
    )
    progress.log(f"built {tag} in {took:.1f} s: {describe_size(built.attrs['Size'], sizes)}")
    return tag


def _run_build(client: Any, context: IO[bytes], tag: str, no_cache: bool, progress: Progress, log: IO[str], base: str) -> str:
    """Run the build through the engine API; returns the image id or raises ImageException."""
    step, pending, image_id = "", "", None
    tail: deque[str] = deque(maxlen=25)
    try:
        chunks = client.api.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            rm=True,
            forcerm=True,
            nocache=no_cache,
            network_mode="host",
            decode=True,
            timeout=3600,
        )
        for chunk in chunks:
            if "stream" in chunk:
                pending += chunk["stream"]
                *lines, pending = pending.split("\n")
                for line in lines:
                    log.write(line + "\n")
                    if not line.strip():
                        continue
                    if re.match(r"Step \d+/\d+ :", line):
                        step = line
                        progress.advance()
                    tail.append(line)
                    progress.log(line)
            elif "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            elif "error" in chunk:
                if pending.strip():
                    tail.append(pending)
                    log.write(pending + "\n")
                log.write(chunk["error"] + "\n")
                raise ImageException(_build_failure(tag, step, chunk["error"], tail, base))
    except sdk().errors.APIError as e:
        raise ImageException(_build_failure(tag, step, short_error(e), tail, base)) from None
    if image_id is None:
        raise ImageException(_build_failure(tag, step, "the engine reported no image id", tail, base))
    return image_id


def _build_failure(tag: str, step: str, error: str, tail: deque, base: str) -> str:
    hint = ""
    if not step or step.split(":", 1)[-1].strip().startswith("FROM") or "pull access denied" in error or "not found" in error:
        hint = (
            f"\n(the base image {base} must be on this engine or pullable; "
            "set MLMAGICS_BASE_IMAGE or DockerWebservice.build_image(image, base_image=...) to use another one)"
        )
    lines = "\n".join(f"  | {line}" for line in tail)
    return f"docker build of {tag} failed at {step or 'the start'}\n{' '.join(error.split())}{hint}\nLast build output:\n{lines}"


def layer_sizes(built: Any) -> dict[str, int]:
    """Bytes per part of the image (base, venv and user, scoring runtime, requirements, models, script and files)."""
    sizes = {"base": 0, **{kind: 0 for kind, _ in _LAYER_KINDS}}
    for layer in built.history():
        created_by = layer.get("CreatedBy") or ""
        kind = next((k for k, marks in _LAYER_KINDS if any(m in created_by for m in marks)), "base")
        sizes[kind] += int(layer.get("Size") or 0)
    return sizes


def describe_size(total: int, sizes: dict[str, int]) -> str:
    parts = ", ".join(f"{kind} {size / 1e6:.1f}" for kind, size in sizes.items() if size or kind == "scoring runtime")
    return f"{total / 1e6:.1f} MB ({parts} MB)"


def push(
    image: Image,
    registry: str,
    username: str | None = None,
    password: str | None = None,
    progress: Progress | None = None,
) -> str:
    """Push the Docker image of `image` to `registry` (host[:port]); builds it first if needed. Returns where it went."""
    progress = progress or NullProgress()
    registry = str(registry or "").split("://", 1)[-1].strip().rstrip("/")  # a path prefix (host/team) is kept
    if not registry:
        raise UserError("give the registry to push to, e.g. image.push('127.0.0.1:5000') or 'myregistry.azurecr.io'")
    client = engine(timeout=3600)
    if not is_built(image, client):
        build(image, progress=progress)
    repository, version = image.build_info["tag"].rsplit(":", 1)
    remote_repo = f"{registry}/{repository}"
    client.api.tag(image.build_info["id"], remote_repo, version)
    remote_tags = sorted({*image.build_info.get("remote_tags", []), f"{remote_repo}:{version}"})
    image.set_build_info(remote_tags=remote_tags)  # removed with the image, pushed or not
    auth = {"username": username, "password": password} if username is not None else None
    progress.stage(f"Pushing {remote_repo}:{version}")
    digest, last_status = None, dict[str, Any]()
    try:
        for chunk in client.api.push(remote_repo, tag=version, stream=True, decode=True, auth_config=auth):
            if "error" in chunk:
                raise ImageException(f"push of {remote_repo}:{version} failed: {' '.join(chunk['error'].split())}")
            status, layer = chunk.get("status", ""), chunk.get("id", "")
            if status.startswith(f"{version}: digest:"):
                digest = status.split("digest:", 1)[1].split()[0]
            if status and last_status.get(layer) != status and status not in ("Pushing", "Waiting", "Preparing"):
                progress.log(f"{layer}: {status}" if layer else status)
            last_status[layer] = status
    except sdk().errors.APIError as e:
        raise ImageException(f"push of {remote_repo}:{version} failed: {short_error(e)}") from None
    location = f"{remote_repo}:{version}"
    image.set_build_info(pushed=location, digest=digest, registry=registry)
    progress.log(f"pushed {location}" + (f" ({digest})" if digest else ""))
    return location


def remove(image: Image) -> None:
    """Remove the Docker image built for `image` from this engine, with the tags push() gave it (registries keep theirs)."""
    info = image.build_info
    try:
        client = engine()
    except Exception:  # noqa: BLE001 - no engine: nothing to remove from it
        return
    for ref in (*info.get("remote_tags", []), info.get("pushed"), info.get("tag")):
        if not ref:
            continue
        found = _engine_image(client, ref)
        if found is None or found.id != info.get("id"):  # the tag moved to another workspace's image: not ours
            continue
        try:
            client.images.remove(ref, noprune=False)
        except sdk().errors.APIError:  # still used by a container (not one of ours): leave it
            pass
    left = _engine_image(client, info["id"]) if info.get("id") else None
    if left is not None and not left.tags:  # a pushed or pulled image keeps a digest reference after its last tag
        try:
            client.images.remove(left.id, noprune=False)
        except sdk().errors.APIError:
            pass
