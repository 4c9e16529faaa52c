"""The cluster the end-to-end tests run against, read from ``LIVEML_E2E_*`` (see README.md here).

``needs_cluster`` skips a module without ``LIVEML_E2E_KUBECONFIG``: a skip is never a pass.
"""
from __future__ import annotations

import os

import pytest

KUBECONFIG = os.environ.get("LIVEML_E2E_KUBECONFIG")
NAMESPACE = os.environ.get("LIVEML_E2E_NAMESPACE", "liveml-e2e")
IMAGE = os.environ.get("LIVEML_E2E_IMAGE", "liveml/runtime:0.1.0")
#: ``LIVEML_E2E_ENV_<NAME>=value`` becomes the pods' environment variable ``NAME``
POD_ENV = {k[len("LIVEML_E2E_ENV_"):]: v for k, v in os.environ.items()
           if k.startswith("LIVEML_E2E_ENV_")}

needs_cluster = pytest.mark.skipif(
    not KUBECONFIG, reason="LIVEML_E2E_KUBECONFIG is not set: no cluster to test against "
    "(a skip is not a pass; see tests/e2e_kubernetes/README.md)")
