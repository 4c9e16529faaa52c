"""The control plane's install: deploy/Dockerfile and the kustomize base in deploy/kubernetes.

No cluster and no Docker engine are needed: every object is validated against the Kubernetes
schema (kubernetes-validate, strict), the RBAC rules are compared with what
``liveml_ext.backends.kubernetes`` declares it calls, the Deployment's args are parsed by the real
CLI parser, and the PostgreSQL overlay's JSON patches are applied here. When ``kubectl`` (with
its built-in kustomize) or ``kustomize`` is on PATH, the base and the overlay are also built with
it; without them that one test is skipped.
"""
from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from kube_sim import expand
from test_kubernetes_manifests import kube_versions

from liveml_ext.backends import kubernetes as kube
from liveml_ext.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "kubernetes"
POSTGRESQL = DEPLOY / "overlays" / "postgresql"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
RUNTIME_DOCKERFILE = REPO / "runtime" / "Dockerfile"
DOCS = REPO / "docs" / "operators-kubernetes.md"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]

NAMESPACE = "liveml"
EXPECTED_FILES = {"namespace.yaml", "serviceaccount.yaml", "role.yaml", "rolebinding.yaml",
                  "clusterrole.yaml", "clusterrolebinding.yaml", "pvc.yaml", "deployment.yaml",
                  "service.yaml"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
RBAC_GROUP = "rbac.authorization.k8s.io"
# server-side apply (PATCH) of an object that does not exist yet is also authorized as "create"
# (k8s.io/apiserver handlers/patch.go), so the Role may add "create" wherever it grants "patch"
SSA_CREATE = "create"


def load(path: Path) -> list[dict[str, Any]]:
    """Every document of a (multi-document) YAML file, empty ones left out."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def yaml_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml"))


def kustomization(root: Path) -> dict[str, Any]:
    (doc,) = load(root / "kustomization.yaml")
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and doc["kind"] == "Kustomization"
    return doc


def base_objects() -> list[dict[str, Any]]:
    """The objects of the base's resources, in the kustomization's order."""
    return [obj for name in kustomization(BASE)["resources"] for obj in load(BASE / name)]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["liveml"]
    return containers[0]


def server_args(deployment: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    """The control plane's parsed `liveml ...` command line (ENTRYPOINT liveml + the args)."""
    c = container(deployment)
    assert "command" not in c, "the image's ENTRYPOINT (liveml) must stay"
    assert all(isinstance(a, str) for a in c["args"]), "args must be strings (quote numbers)"
    values = {e["name"]: e["value"] for e in c.get("env") or [] if "value" in e}
    args = [expand(a, {**values, **(env or {})}) for a in c["args"]]
    return build_parser().parse_args(args)


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, verb, resourceName or "") of every combination a rule list allows."""
    out = set()
    for rule in rules:
        for group in rule.get("apiGroups") or [""]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or [""]:
                        out.add((group, resource, verb, name))
    return out


def wildcards(rules: list[dict[str, Any]]) -> list[str]:
    return [f"{key}: {value}" for rule in rules for key in ("apiGroups", "resources", "verbs",
                                                              "resourceNames", "nonResourceURLs")
            for value in rule.get(key) or [] if "*" in value]


def selector(text: str) -> dict[str, str]:
    """``a=b,c=d`` -> {"a": "b", "c": "d"} (equality selectors only)."""
    return dict(part.split("=", 1) for part in text.split(","))


def matches(labels: dict[str, str], sel: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in sel.items())


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 "add" operations (what the overlay uses), applied to a copy of ``doc``."""
    doc = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "add", f"only add is applied here: {op}"
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"][1:].split("/")]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), op["value"])
        else:
            node[last] = op["value"]
    return doc


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) per instruction: comments dropped, backslash continuations joined."""
    instructions, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not current):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        keyword, _, rest = current.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, f"{path}: a continuation line at the end"
    return instructions


def args_of(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """ARG name -> default ("" when none), quotes removed."""
    out = {}
    for keyword, rest in instructions:
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            out[name] = shlex.split(default)[0] if default else ""
    return out


def only(instructions: list[tuple[str, str]], keyword: str) -> str:
    found = [rest for k, rest in instructions if k == keyword]
    assert len(found) == 1, f"{len(found)} {keyword} instructions"
    return found[0]


# ------------------------------------------------------------------------------------- the files


def test_kubernetes_install_files_are_kubernetes_objects() -> None:
    files = yaml_files(DEPLOY)
    assert {p.name for p in files if p.parent == BASE} >= EXPECTED_FILES
    for path in files:
        docs = load(path)
        assert docs, f"{path} is empty"
        if path.name == "kustomization.yaml":
            assert len(docs) == 1 and docs[0]["kind"] == "Kustomization", path
            continue
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path}: not an object: {doc}"
            assert doc["metadata"].get("name"), f"{path}: a {doc['kind']} with no name"


@pytest.mark.parametrize("version", kube_versions())
def test_kubernetes_install_objects_validate_strictly(version: str) -> None:
    objects = [obj for path in yaml_files(DEPLOY) if path.name != "kustomization.yaml"
               for obj in load(path)]
    assert len(objects) >= len(EXPECTED_FILES)
    for obj in objects:
        assert kubernetes_validate.validate(obj, version, strict=True) == version, obj["kind"]
    deployment = of_kind(base_objects(), "Deployment")
    patched = json_patch(deployment, postgresql_patch())
    assert kubernetes_validate.validate(patched, version, strict=True) == version


@pytest.mark.parametrize("version", kube_versions())
def test_kubernetes_install_strict_validation_rejects_a_typo(version: str) -> None:
    deployment = copy.deepcopy(of_kind(base_objects(), "Deployment"))
    container(deployment)["readinesProbe"] = container(deployment).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_kubernetes_install_kustomization_lists_every_file() -> None:
    k = kustomization(BASE)
    resources = k["resources"]
    assert len(resources) == len(set(resources)), f"listed twice: {resources}"
    present = {p.relative_to(BASE).as_posix() for p in yaml_files(BASE)} - {"kustomization.yaml"}
    assert set(resources) == present
    assert k["namespace"] == NAMESPACE
    for entry in k.get("labels") or []:
        assert not entry.get("includeSelectors"), "selectors are immutable: leave them out"
    assert "commonLabels" not in k, "commonLabels rewrites selectors; use labels"

    # every namespaced object names the namespace itself too (kubectl apply -f works as well)
    for obj in base_objects():
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert namespace is None, f"{obj['kind']} is cluster scoped"
        else:
            assert namespace == NAMESPACE, f"{obj['kind']} {obj['metadata']['name']}: {namespace}"
    assert of_kind(base_objects(), "Namespace")["metadata"]["name"] == NAMESPACE


def test_kubernetes_install_images_entry_matches_the_deployment_and_version() -> None:
    deployment = of_kind(base_objects(), "Deployment")
    name, _, tag = container(deployment)["image"].rpartition(":")
    assert (name, tag) == ("liveml/liveml", VERSION)
    (entry,) = kustomization(BASE)["images"]
    assert entry["name"] == name and entry.get("newTag", tag) == VERSION
    assert server_args(deployment).image == f"liveml/runtime:{VERSION}"
    assert f"docker build -f deploy/Dockerfile -t liveml/liveml:{VERSION} ." in DOCKERFILE.read_text()


# ------------------------------------------------------------------------------------------- RBAC


def test_kubernetes_install_role_covers_role_rules_and_no_more() -> None:
    objects = base_objects()
    role = of_kind(objects, "Role")
    assert wildcards(role["rules"]) == []
    have = grants(role["rules"])
    token_secret = server_args(of_kind(objects, "Deployment")).replica_token_secret
    needed = {(g, r, v) for g, r, v, _ in grants(kube.ROLE_RULES)}

    def granted(group: str, resource: str, verb: str) -> bool:
        # a rule restricted by resourceNames covers the replica token Secret only
        names = {n for g, r, v, n in have if (g, r, v) == (group, resource, verb)}
        return "" in names or (resource == "secrets" and token_secret in names)

    missing = sorted(g for g in needed if not granted(*g))
    assert missing == [], f"the Role lacks {missing}"
    creates = sorted((g, r) for g, r, v in needed if v == "patch" and not granted(g, r, SSA_CREATE))
    assert creates == [], f"server-side apply creates these, so the Role needs create: {creates}"
    allowed = needed | {(g, r, SSA_CREATE) for g, r, v in needed if v == "patch"}
    extra = sorted((g, r, v) for g, r, v, _ in have if (g, r, v) not in allowed)
    assert extra == [], f"the Role grants more than liveml calls: {extra}"
    secret_names = {n for g, r, v, n in have if r == "secrets"}
    assert secret_names == {token_secret}, "Secrets: only the replica token, by name"


def test_kubernetes_install_clusterrole_covers_cluster_role_rules_and_no_more() -> None:
    cluster_role = of_kind(base_objects(), "ClusterRole")
    assert cluster_role["metadata"]["name"] == "liveml-nodes-reader"
    assert wildcards(cluster_role["rules"]) == []
    assert all("resourceNames" not in r and "nonResourceURLs" not in r for r in cluster_role["rules"])
    assert grants(cluster_role["rules"]) == grants(kube.CLUSTER_ROLE_RULES)


def test_kubernetes_install_bindings_name_the_service_account_and_roles() -> None:
    objects = base_objects()
    account = of_kind(objects, "ServiceAccount")["metadata"]
    assert account["name"] == "liveml"
    deployment = of_kind(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]
    assert deployment["spec"]["template"]["spec"].get("automountServiceAccountToken", True)
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    for binding_kind, role_kind in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        binding, role = of_kind(objects, binding_kind), of_kind(objects, role_kind)
        assert binding["roleRef"] == {"apiGroup": RBAC_GROUP, "kind": role_kind,
                                      "name": role["metadata"]["name"]}
        assert binding["subjects"] == [subject]
    assert of_kind(objects, "ClusterRoleBinding")["metadata"]["name"] == "liveml-nodes-reader"
    # replicas go to the control plane's own namespace (no --kube-namespace): the Role is there
    assert server_args(deployment).kube_namespace == ""
    assert of_kind(objects, "Role")["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert of_kind(objects, "RoleBinding")["metadata"]["namespace"] == deployment["metadata"]["namespace"]


def test_kubernetes_install_docs_show_the_rbac_files() -> None:
    """docs/operators-kubernetes.md's Role and ClusterRole rules are those of the files."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)
    shown = [doc for block in blocks for doc in yaml.safe_load_all(block)
             if isinstance(doc, dict) and doc.get("kind") in ("Role", "ClusterRole")]
    objects = base_objects()
    for kind in ("Role", "ClusterRole"):
        docs = [d for d in shown if d["kind"] == kind]
        assert docs, f"the docs show no {kind}"
        for doc in docs:
            assert doc["rules"] == of_kind(objects, kind)["rules"], f"the docs' {kind} differs"


# ------------------------------------------------------------------- Deployment, PVC and Service


def test_kubernetes_install_deployment_args_parse_as_a_kubernetes_server() -> None:
    objects = base_objects()
    deployment = of_kind(objects, "Deployment")
    args = server_args(deployment)
    assert args.command == "server"
    assert args.backend == "kubernetes"
    assert args.host == "0.0.0.0"
    c = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert args.port == ports["http"]

    pvc = of_kind(objects, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert volumes[mounts[args.home]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    env = {e["name"]: e.get("value") for e in c.get("env") or []}
    assert env.get("LIVEML_HOME", args.home) == args.home

    service = of_kind(objects, "Service")
    port = next(p for p in service["spec"]["ports"] if p["name"] == "http")["port"]
    assert args.control_plane_url == \
        f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{port}"
    assert args.database_url == "" and args.artifact_url == ""  # SQLite and artifacts in the home


def test_kubernetes_install_deployment_is_one_recreated_restricted_pod() -> None:
    objects = base_objects()
    deployment = of_kind(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert matches(spec["template"]["metadata"]["labels"], spec["selector"]["matchLabels"])
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == security["runAsGroup"] == security["fsGroup"] == 10001
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(deployment)
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert not c["securityContext"].get("privileged")
    assert c["resources"]["requests"] == c["resources"]["limits"]
    assert set(c["resources"]["limits"]) == {"cpu", "memory"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe == "startupProbe" and probe not in c:
            continue
        assert c[probe].get("tcpSocket") == {"port": "http"}, f"{probe}: every HTTP endpoint needs a token"

    pvc = of_kind(objects, "PersistentVolumeClaim")["spec"]
    assert pvc["accessModes"] == ["ReadWriteOnce"]
    assert pvc["resources"]["requests"]["storage"] == "10Gi"


def test_kubernetes_install_service_selects_the_control_plane_only() -> None:
    objects = base_objects()
    deployment, service = of_kind(objects, "Deployment"), of_kind(objects, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    sel = service["spec"]["selector"]
    assert sel and matches(pod_labels, sel)
    assert service["spec"]["type"] == "ClusterIP"
    port_names = {p["name"] for p in container(deployment)["ports"]}
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in port_names and port["name"] == "http"

    # neither the Service nor the Deployment takes a replica's pods, and liveml's listing of its
    # replica Deployments (by label) does not find the control plane's
    replica_labels = selector(kube.label_selector("liveml-house-prices-a356e28a"))
    assert not matches(replica_labels, sel)
    assert not matches(replica_labels, deployment["spec"]["selector"]["matchLabels"])
    assert not matches(deployment["metadata"].get("labels") or {}, selector(kube.MANAGED_SELECTOR))
    assert not matches(pod_labels, selector(kube.MANAGED_SELECTOR))


# ------------------------------------------------------------------------ the PostgreSQL overlay


def postgresql_patch() -> list[dict[str, Any]]:
    (entry,) = kustomization(POSTGRESQL)["patches"]
    assert entry["target"]["kind"] == "Deployment" and entry["target"]["name"] == "liveml"
    return yaml.safe_load(entry["patch"])


def test_kubernetes_install_postgresql_overlay_passes_the_database_url() -> None:
    k = kustomization(POSTGRESQL)
    assert [(POSTGRESQL / r).resolve() for r in k["resources"]] == [BASE.resolve()]
    deployment = json_patch(of_kind(base_objects(), "Deployment"), postgresql_patch())
    env = {e["name"]: e for e in container(deployment)["env"]}
    ref = env["LIVEML_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("liveml-database", "url")
    url = "postgresql+psycopg://liveml:secret@postgres.example.com:5432/liveml"
    args = server_args(deployment, env={"LIVEML_DATABASE_URL": url})
    assert args.database_url == url
    assert args.backend == "kubernetes" and args.home == "/var/lib/liveml"


def test_kubernetes_install_appended_flags_override_the_base() -> None:
    """The docs tell overlays to append e.g. `--image <ref>`: the last value wins."""
    deployment = json_patch(of_kind(base_objects(), "Deployment"), [
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--image"},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-",
         "value": "registry.example.com/liveml/runtime:0.1.0"}])
    assert server_args(deployment).image == "registry.example.com/liveml/runtime:0.1.0"


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.skipif(kustomize_command() is None, reason="neither kustomize nor kubectl on PATH")
@pytest.mark.parametrize("root", [BASE, POSTGRESQL], ids=["base", "postgresql"])
def test_kubernetes_install_kustomize_build(root: Path) -> None:
    out = subprocess.run([*kustomize_command(), str(root)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == \
        sorted((o["kind"], o["metadata"]["name"]) for o in base_objects())
    for obj in built:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "liveml"
        for version in kube_versions():
            kubernetes_validate.validate(obj, version, strict=True)
    deployment = of_kind(built, "Deployment")
    base = of_kind(base_objects(), "Deployment")
    assert deployment["spec"]["selector"] == base["spec"]["selector"]
    if root == POSTGRESQL:
        assert deployment == json_patch(deployment_with_labels(base, deployment), postgresql_patch())
    else:
        assert deployment == deployment_with_labels(base, deployment)


def deployment_with_labels(base: dict[str, Any], built: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out["metadata"]["labels"] = built["metadata"]["labels"]
    return out


# ----------------------------------------------------------------------------------- the images


def test_kubernetes_install_dockerfile_runs_the_kubernetes_server() -> None:
    instructions = dockerfile(DOCKERFILE)
    assert json.loads(only(instructions, "ENTRYPOINT")) == ["liveml"]
    cmd = json.loads(only(instructions, "CMD"))
    assert cmd == ["server", "--backend", "kubernetes", "--host", "0.0.0.0"]
    args = build_parser().parse_args(cmd)
    assert (args.command, args.backend, args.host) == ("server", "kubernetes", "0.0.0.0")
    assert PYPROJECT["project"]["scripts"]["liveml"] == "liveml_ext.cli:main"

    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", only(instructions, "FROM"))
    runtime = dockerfile(RUNTIME_DOCKERFILE)
    assert only(instructions, "FROM") == only(runtime, "FROM")
    assert only(instructions, "USER") == only(runtime, "USER") == "10001:10001"
    pod = of_kind(base_objects(), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert only(instructions, "USER") == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    ports = {p["containerPort"] for p in container(of_kind(base_objects(), "Deployment"))["ports"]}
    assert {int(only(instructions, "EXPOSE"))} == ports

    # the model libraries mirror the replica image's build arguments (same names and defaults)
    mine, theirs = args_of(instructions), args_of(runtime)
    for name in ("WITH_SPARK", "PYSPARK_VERSION", "FSSPEC_PACKAGES", "EXTRA_PACKAGES"):
        assert mine[name] == theirs[name], name
    assert mine["DATABASE_PACKAGES"].startswith("psycopg[binary]")
    run = " ".join(rest for k, rest in instructions if k == "RUN")
    for name in ("FSSPEC_PACKAGES", "EXTRA_PACKAGES", "DATABASE_PACKAGES", "PYSPARK_VERSION"):
        assert f"${name}" in run, f"{name} is never used"


def test_kubernetes_install_dockerfile_copies_what_the_wheel_is_built_from() -> None:
    copied = []
    for keyword, rest in dockerfile(DOCKERFILE):
        if keyword == "COPY":
            *sources, _ = rest.split()
            assert not any(s.startswith("--") for s in sources), "plain COPY from the context"
            copied += sources
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(source), f"COPY {source}: excluded by {DOCKERIGNORE.name}"
    wheel = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
    # the JupyterLab extension (labextension/, built with npm) is left out of the control-plane
    # image on purpose: its pip install must then skip the npm build hook
    lab = [p for p in wheel.get("shared-data", {}) if p.startswith("labextension/")]
    skips = any(k == "RUN" and "SKIP_JUPYTER_BUILDER=1 pip install" in rest
                for k, rest in dockerfile(DOCKERFILE))
    assert skips or not lab or "labextension" in copied, \
        "the image copies no labextension/: its pip install needs SKIP_JUPYTER_BUILDER=1"
    needed = ["pyproject.toml", PYPROJECT["project"]["readme"], *wheel["packages"],
              *(p for p in wheel.get("shared-data", {}) if p not in lab or not skips)]
    for path in needed:
        assert any(path == c or path.startswith(c.rstrip("/") + "/") for c in copied), \
            f"the wheel needs {path}, the Dockerfile does not copy it"


def ignored(path: str) -> bool:
    """Whether a .dockerignore pattern (as used in Dockerfile.dockerignore) excludes ``path``."""
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "no exceptions: keep it simple"
    parts = Path(path).parts
    for pattern in patterns:
        name = pattern.removeprefix("**/")
        if pattern.startswith("**/"):
            if any(Path(*parts[: i + 1]).match(name) for i in range(len(parts))):
                return True
        elif Path(*parts[: len(Path(pattern).parts)]).match(pattern) or path == pattern:
            return True
    return False


def test_kubernetes_install_dockerignore_leaves_out_the_heavy_folders() -> None:
    for path in (".venv", ".git", "tests", "benchmarks", "labextension/node_modules",
                 "node_modules", "liveml_ext/__pycache__"):
        assert ignored(path), path
    for path in ("pyproject.toml", "README.md", "liveml_ext", "runtime/liveml_runtime/__init__.py"):
        assert not ignored(path), path
