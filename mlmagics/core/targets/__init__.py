"""Deployment targets: where a service runs. One package per target; each registers itself.

| compute type | names accepted | package | needs |
| --- | --- | --- | --- |
| Local | local | local/ | nothing: a detached process on 127.0.0.1 |
| Docker | docker, aci | docker/ | a Docker engine (`pip install 'mlmagics[docker]'`) |
| Kubernetes | kubernetes, aks | kubernetes/ | a cluster in kubeconfig and a registry (`mlmagics[kubernetes]`) |

A target is a `Webservice` subclass with its `compute_type` and `names`, and a
`DeploymentConfiguration` subclass: defining them registers them (services.py and configs.py
keep the registries, `__init_subclass__`), so the core never imports a target — mlmagics.core
imports every target package, and `target_class("aks")` finds the class. What both container
targets share (the layout inside an image, how images are named) is container.py.
"""
