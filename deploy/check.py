#!/usr/bin/env python3
"""Static checks of the install manifests in deploy/ (no cluster needed).

    python3 deploy/check.py

Parses every YAML document under deploy/ except the generated crds/ (a Rust test keeps those in
step with the API types; here they are only read to know which kinds exist), then checks that:

- every document has apiVersion, kind and metadata.name;
- kustomization.yaml lists files that exist, every CRD file and every top-level manifest;
- every custom resource used (CDIConfig, DataVolume, ...) has a CRD serving its version;
- namespaced objects name the namespace of namespace.yaml, cluster-scoped ones name none;
- every ClusterRole/Role rule has apiGroups, resources and verbs, without wildcards, and Leases
  are granted only in a Role; bindings point at roles and ServiceAccounts that exist;
- each Deployment runs as a ServiceAccount of rbac.yaml, has its program's env, a restricted
  security context, resources and probes on a declared port, and its Services select it;
- each APIService is named <version>.<group> and points at a Service and port of deploy/;
- each admission webhook points at a Service and port of deploy/ and a path cdi-apiserver
  serves (apiserver/src/webhook/mod.rs), fails closed, has no side effects, speaks
  AdmissionReview v1 and matches only cdi.kubevirt.io/v1beta1 datavolumes;
- the Containerfiles copy every workspace member, build their package with --locked, and are
  tagged as the images the Deployment uses.

Prints each check, and every problem found; exits 1 if there was any (2 without PyYAML).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    print(
        "deploy/check.py needs PyYAML: pip install pyyaml (or apt-get install python3-yaml)",
        file=sys.stderr,
    )
    sys.exit(2)

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
CRDS = DEPLOY / "crds"

# Kinds this directory may hold that are not namespaced (custom kinds: from their CRD).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PersistentVolume",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}
# Where cdi-apiserver's webhook paths are defined (`pub const …_PATH: &str = "/…";`).
WEBHOOK_PATHS_SOURCE = ROOT / "apiserver" / "src" / "webhook" / "mod.rs"
# Namespaces of the cluster's own that a manifest may name: bindings to the built-in Roles there.
SYSTEM_NAMESPACES = {"kube-system"}
# Built-in roles bindings may name: (kind, namespace of a Role, name).
BUILTIN_ROLES = {
    ("ClusterRole", None, "system:auth-delegator"),
    ("Role", "kube-system", "extension-apiserver-authentication-reader"),
}
RBAC_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
# What each Deployment's program reads from its environment (controller/src/main.rs,
# apiserver/src/main.rs).
DEPLOYMENT_ENV = {
    "cdi-deployment": ["IMPORTER_IMAGE", "UPLOADSERVER_IMAGE", "CDI_NAMESPACE", "POD_NAME"],
    "cdi-apiserver": ["TLS_CERT_FILE", "TLS_KEY_FILE", "SIGNING_KEY_FILE"],
    "cdi-uploadproxy": [
        "SERVER_CERT_FILE",
        "SERVER_KEY_FILE",
        "UPLOAD_CLIENT_CERT_FILE",
        "UPLOAD_CLIENT_KEY_FILE",
        "UPLOAD_SERVER_CA_FILE",
        "APISERVER_PUBLIC_KEY_FILE",
    ],
}
# Containerfile -> the package and binary it builds.
IMAGES = {
    "controller.Containerfile": "cdi-controller",
    "importer.Containerfile": "cdi-importer",
    "uploadserver.Containerfile": "cdi-uploadserver",
    "apiserver.Containerfile": "cdi-apiserver",
    "uploadproxy.Containerfile": "cdi-uploadproxy",
    "cloner.Containerfile": "cdi-cloner",
}


class Report:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checks = 0

    def check(self, what: str, problems: list[str]) -> None:
        """One named check and the problems it found (none: it passed)."""
        self.checks += 1
        if problems:
            print(f"FAIL {what}")
            for p in problems:
                print(f"       - {p}")
            self.problems.extend(f"{what}: {p}" for p in problems)
        else:
            print(f"ok   {what}")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class Doc:
    """One YAML document and where it came from."""

    def __init__(self, path: Path, index: int, body: dict) -> None:
        self.path, self.index, self.body = path, index, body

    @property
    def kind(self) -> str:
        return self.body.get("kind", "")

    @property
    def name(self) -> str:
        return (self.body.get("metadata") or {}).get("name", "")

    @property
    def namespace(self) -> str | None:
        return (self.body.get("metadata") or {}).get("namespace")

    def where(self) -> str:
        return f"{rel(self.path)}#{self.index} ({self.kind or '?'} {self.name or '?'})"


def load_manifests(report: Report) -> list[Doc]:
    files = sorted(
        p
        for p in DEPLOY.rglob("*")
        if p.suffix in (".yaml", ".yml") and CRDS not in p.parents and p.is_file()
    )
    docs: list[Doc] = []
    problems: list[str] = []
    for path in files:
        try:
            bodies = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as e:
            problems.append(f"{rel(path)}: not valid YAML: {e}")
            continue
        for i, body in enumerate(bodies):
            if body is None:
                continue
            if not isinstance(body, dict):
                problems.append(f"{rel(path)}#{i}: a {type(body).__name__}, not a mapping")
                continue
            docs.append(Doc(path, i, body))
    report.check(f"{len(files)} YAML files parse ({len(docs)} documents, crds/ excluded)", problems)

    problems = []
    seen: dict[tuple, str] = {}
    for d in docs:
        for field in ("apiVersion", "kind"):
            if not isinstance(d.body.get(field), str) or not d.body[field]:
                problems.append(f"{d.where()}: no {field}")
        if d.kind != "Kustomization" and not d.name:
            problems.append(f"{d.where()}: no metadata.name")
        if d.kind and d.name:
            key = (group_version(d.body.get("apiVersion", ""))[0], d.kind, d.namespace, d.name)
            if key in seen:
                problems.append(f"{d.where()}: also defined in {seen[key]}")
            seen[key] = d.where()
    report.check("every document has apiVersion, kind and metadata.name (and is unique)", problems)
    return docs


def load_crds(report: Report) -> dict[tuple[str, str], dict]:
    """(group, kind) -> {"versions": served versions, "scope": ...} from deploy/crds/."""
    crds: dict[tuple[str, str], dict] = {}
    problems: list[str] = []
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for path in sorted(CRDS.glob("*.yaml")):
        for body in yaml.load_all(path.read_text(), Loader=loader):
            if not body:
                continue
            if body.get("kind") != "CustomResourceDefinition":
                problems.append(f"{rel(path)}: a {body.get('kind')}, not a CRD")
                continue
            spec = body["spec"]
            crds[(spec["group"], spec["names"]["kind"])] = {
                "versions": {v["name"] for v in spec["versions"] if v.get("served")},
                "scope": spec.get("scope", "Namespaced"),
            }
    report.check(f"{len(crds)} CRDs read from deploy/crds/", problems)
    return crds


def check_kustomization(report: Report, docs: list[Doc]) -> None:
    kust = [d for d in docs if d.kind == "Kustomization"]
    problems: list[str] = []
    if len(kust) != 1 or kust[0].path != DEPLOY / "kustomization.yaml":
        report.check("deploy/kustomization.yaml is the one Kustomization", ["not found"])
        return
    resources = kust[0].body.get("resources") or []
    listed = set()
    for r in resources:
        if not isinstance(r, str):
            problems.append(f"resource {r!r} is not a path")
            continue
        if r in listed:
            problems.append(f"{r} is listed twice")
        listed.add(r)
        if not (DEPLOY / r).is_file():
            problems.append(f"lists {r}, which does not exist")
    for crd in sorted(CRDS.glob("*.yaml")):
        if f"crds/{crd.name}" not in listed:
            problems.append(f"does not list crds/{crd.name}")
    for top in sorted(DEPLOY.glob("*.yaml")):
        if top.name != "kustomization.yaml" and top.name not in listed:
            problems.append(f"does not list {top.name}")
    for r in sorted(listed):
        if r.startswith("examples/"):
            problems.append(f"lists {r}: examples are not part of the install")
    report.check(f"kustomization.yaml lists {len(listed)} files, all present, every CRD", problems)


def check_kinds_and_namespaces(report: Report, docs: list[Doc], crds: dict) -> None:
    problems: list[str] = []
    custom = 0
    crd_groups = {g for g, _ in crds}
    for d in docs:
        group, version = group_version(d.body.get("apiVersion", ""))
        if group in crd_groups or group.endswith("kubevirt.io"):
            custom += 1
            crd = crds.get((group, d.kind))
            if crd is None:
                problems.append(f"{d.where()}: no CRD in deploy/crds/ for {group}/{d.kind}")
            elif version not in crd["versions"]:
                problems.append(f"{d.where()}: its CRD does not serve {version}")
    report.check(f"{custom} custom resources have a CRD serving their version", problems)

    problems = []
    namespaces = {d.name for d in docs if d.kind == "Namespace"}
    scoped = 0
    for d in docs:
        if d.kind == "Kustomization" or d.path.parent.name == "examples":
            continue  # examples go to the namespace of the kubectl context
        group, _ = group_version(d.body.get("apiVersion", ""))
        crd = crds.get((group, d.kind))
        cluster = (crd["scope"] == "Cluster") if crd else d.kind in CLUSTER_SCOPED
        if cluster:
            if d.namespace:
                problems.append(f"{d.where()}: cluster-scoped but names namespace {d.namespace}")
        else:
            scoped += 1
            if d.kind == "RoleBinding" and d.namespace in SYSTEM_NAMESPACES:
                continue
            if d.namespace not in namespaces:
                problems.append(
                    f"{d.where()}: namespace {d.namespace!r} is not one of {sorted(namespaces)}"
                )
    report.check(
        f"{scoped} namespaced objects are in {sorted(namespaces)}, cluster-scoped ones in none",
        problems,
    )


def check_rbac(report: Report, docs: list[Doc]) -> None:
    rbac = [d for d in docs if d.path == DEPLOY / "rbac.yaml"]
    roles = [d for d in rbac if d.kind in ("ClusterRole", "Role")]
    problems: list[str] = []
    rules = 0
    for role in roles:
        for i, rule in enumerate(role.body.get("rules") or []):
            rules += 1
            where = f"{role.where()} rule {i}"
            for field in ("apiGroups", "resources", "verbs"):
                value = rule.get(field)
                if not isinstance(value, list) or not value:
                    problems.append(f"{where}: no {field}")
                elif any(not isinstance(v, str) for v in value):
                    problems.append(f"{where}: {field} has a non-string entry")
                elif "*" in value:
                    problems.append(f"{where}: wildcard in {field}")
            for verb in rule.get("verbs") or []:
                if verb not in RBAC_VERBS and verb != "*":
                    problems.append(f"{where}: unknown verb {verb!r}")
            if (
                role.kind == "ClusterRole"
                and "coordination.k8s.io" in (rule.get("apiGroups") or [])
                and "leases" in (rule.get("resources") or [])
            ):
                problems.append(f"{where}: Leases cluster-wide (only its namespace's, in a Role)")
        if not role.body.get("rules"):
            problems.append(f"{role.where()}: no rules")
    report.check(
        f"{len(roles)} roles in rbac.yaml, {rules} rules, each with apiGroups/resources/verbs",
        problems,
    )

    problems = []
    accounts = {(d.namespace, d.name) for d in rbac if d.kind == "ServiceAccount"}
    defined = {(d.kind, d.namespace if d.kind == "Role" else None, d.name) for d in roles}
    defined |= BUILTIN_ROLES
    bindings = [d for d in rbac if d.kind in ("ClusterRoleBinding", "RoleBinding")]
    for b in bindings:
        ref = b.body.get("roleRef") or {}
        ns = b.namespace if ref.get("kind") == "Role" else None
        if ref.get("apiGroup") != "rbac.authorization.k8s.io":
            problems.append(f"{b.where()}: roleRef.apiGroup is {ref.get('apiGroup')!r}")
        if (ref.get("kind"), ns, ref.get("name")) not in defined:
            problems.append(
                f"{b.where()}: roleRef {ref.get('kind')} {ref.get('name')} is neither in rbac.yaml "
                "nor built in"
            )
        subjects = b.body.get("subjects") or []
        if not subjects:
            problems.append(f"{b.where()}: no subjects")
        for s in subjects:
            if s.get("kind") == "ServiceAccount" and (s.get("namespace"), s.get("name")) not in accounts:
                problems.append(
                    f"{b.where()}: ServiceAccount {s.get('namespace')}/{s.get('name')} not in rbac.yaml"
                )
    report.check(f"{len(bindings)} bindings name roles and ServiceAccounts of rbac.yaml", problems)


def container_ports(container: dict) -> tuple[set, set]:
    ports = container.get("ports") or []
    return {p.get("name") for p in ports if p.get("name")}, {p.get("containerPort") for p in ports}


def check_deployments(report: Report, docs: list[Doc]) -> dict:
    deployments = [d for d in docs if d.kind == "Deployment"]
    names = sorted(d.name for d in deployments)
    if names != sorted(DEPLOYMENT_ENV):
        report.check(f"the Deployments are {sorted(DEPLOYMENT_ENV)}", [f"found {names}"])
    images: set = set()
    env: dict = {}
    for dep in deployments:
        found = check_deployment(report, docs, dep)
        images |= found["images"]
        env.update(found["env"])
    return {"images": images, "env": env}


def check_deployment(report: Report, docs: list[Doc], dep: Doc) -> dict:
    spec = dep.body.get("spec") or {}
    template = spec.get("template") or {}
    pod = template.get("spec") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}

    problems: list[str] = []
    sa = pod.get("serviceAccountName")
    accounts = {
        (d.namespace, d.name)
        for d in docs
        if d.kind == "ServiceAccount" and d.path == DEPLOY / "rbac.yaml"
    }
    if not sa:
        problems.append("no serviceAccountName")
    elif (dep.namespace, sa) not in accounts:
        problems.append(f"ServiceAccount {dep.namespace}/{sa} is not in rbac.yaml")
    report.check(f"Deployment {dep.name} runs as ServiceAccount {sa} of rbac.yaml", problems)

    problems = []
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if not selector:
        problems.append("no selector.matchLabels")
    for k, v in selector.items():
        if labels.get(k) != v:
            problems.append(f"selector {k}={v} does not match the pod template's labels")
    containers = pod.get("containers") or []
    if not containers:
        problems.append("no containers")
    pod_sc = pod.get("securityContext") or {}
    for c in containers:
        name = c.get("name", "?")
        if not c.get("image"):
            problems.append(f"container {name}: no image")
        env = {e.get("name") for e in c.get("env") or []}
        for wanted in DEPLOYMENT_ENV.get(dep.name, []):
            if wanted not in env:
                problems.append(f"container {name}: env lacks {wanted}")
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))):
            problems.append(f"container {name}: runAsNonRoot is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"container {name}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"container {name}: readOnlyRootFilesystem is not true")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"container {name}: capabilities.drop lacks ALL")
        seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
        if seccomp.get("type") != "RuntimeDefault":
            problems.append(f"container {name}: seccompProfile is not RuntimeDefault")
        resources = c.get("resources") or {}
        for section in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if res not in (resources.get(section) or {}):
                    problems.append(f"container {name}: no resources.{section}.{res}")
        names, numbers = container_ports(c)
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != path:
                problems.append(f"container {name}: {probe} is not an HTTP GET of {path}")
            elif get.get("port") not in names | numbers:
                problems.append(f"container {name}: {probe} port {get.get('port')!r} not declared")
    report.check(
        f"Deployment {dep.name}: selector, env, restricted securityContext, "
        "resources, probes",
        problems,
    )

    problems = []
    services = [
        d
        for d in docs
        if d.kind == "Service" and d.path == dep.path and d.namespace == dep.namespace
    ]
    names: set = set()
    numbers: set = set()
    for c in containers:
        n, p = container_ports(c)
        names |= n
        numbers |= p
    for svc in services:
        sel = (svc.body.get("spec") or {}).get("selector") or {}
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            problems.append(f"{svc.where()}: selector {sel} does not select the Deployment's pods")
        if svc.namespace != dep.namespace:
            problems.append(f"{svc.where()}: not in the Deployment's namespace")
        for port in (svc.body.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if target not in names | numbers:
                problems.append(f"{svc.where()}: targetPort {target!r} is not a container port")
    if not services:
        problems.append("no Service next to the Deployment")
    report.check(
        f"{len(services)} Service(s) select Deployment {dep.name}'s pods and ports", problems
    )
    return {"images": {c.get("image") for c in containers}, "env": {
        e.get("name"): e.get("value") for c in containers for e in c.get("env") or []
    }}


def check_api_services(report: Report, docs: list[Doc]) -> None:
    services = {(d.namespace, d.name): d for d in docs if d.kind == "Service"}
    problems: list[str] = []
    api_services = [d for d in docs if d.kind == "APIService"]
    for a in api_services:
        spec = a.body.get("spec") or {}
        group, version = spec.get("group"), spec.get("version")
        if a.name != f"{version}.{group}":
            problems.append(f"{a.where()}: not named <version>.<group> ({version}.{group})")
        ref = spec.get("service") or {}
        svc = services.get((ref.get("namespace"), ref.get("name")))
        if svc is None:
            problems.append(
                f"{a.where()}: Service {ref.get('namespace')}/{ref.get('name')} is not in deploy/"
            )
            continue
        ports = {p.get("port") for p in (svc.body.get("spec") or {}).get("ports") or []}
        if ref.get("port", 443) not in ports:
            problems.append(f"{a.where()}: port {ref.get('port', 443)} is not one of {svc.where()}")
        if spec.get("insecureSkipTLSVerify"):
            problems.append(f"{a.where()}: insecureSkipTLSVerify (give a caBundle instead)")
    report.check(f"{len(api_services)} APIService(s) name a Service and port of deploy/", problems)


def served_webhook_paths() -> set[str]:
    text = WEBHOOK_PATHS_SOURCE.read_text() if WEBHOOK_PATHS_SOURCE.is_file() else ""
    return set(re.findall(r'pub const \w+_PATH: &str = "(/[^"]*)";', text))


def check_webhooks(report: Report, docs: list[Doc]) -> None:
    services = {(d.namespace, d.name): d for d in docs if d.kind == "Service"}
    served = served_webhook_paths()
    problems: list[str] = []
    if not served:
        problems.append(f"no webhook paths found in {rel(WEBHOOK_PATHS_SOURCE)}")
    configs = [
        d
        for d in docs
        if d.kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    ]
    count = 0
    for c in configs:
        for i, hook in enumerate(c.body.get("webhooks") or []):
            count += 1
            where = f"{c.where()} webhook {i} ({hook.get('name')})"
            ref = (hook.get("clientConfig") or {}).get("service") or {}
            svc = services.get((ref.get("namespace"), ref.get("name")))
            if svc is None:
                problems.append(
                    f"{where}: Service {ref.get('namespace')}/{ref.get('name')} is not in deploy/"
                )
            else:
                ports = {p.get("port") for p in (svc.body.get("spec") or {}).get("ports") or []}
                if ref.get("port", 443) not in ports:
                    problems.append(f"{where}: port {ref.get('port', 443)} is not one of {svc.where()}")
            if ref.get("path") not in served:
                problems.append(f"{where}: path {ref.get('path')!r} is not one of {sorted(served)}")
            if hook.get("failurePolicy") != "Fail":
                problems.append(f"{where}: failurePolicy is {hook.get('failurePolicy')!r}, not Fail")
            if hook.get("sideEffects") != "None":
                problems.append(f"{where}: sideEffects is {hook.get('sideEffects')!r}, not None")
            if "v1" not in (hook.get("admissionReviewVersions") or []):
                problems.append(f"{where}: admissionReviewVersions lacks v1")
            for rule in hook.get("rules") or []:
                if (
                    rule.get("apiGroups") != ["cdi.kubevirt.io"]
                    or rule.get("apiVersions") != ["v1beta1"]
                    or rule.get("resources") != ["datavolumes"]
                ):
                    problems.append(f"{where}: a rule matches more than cdi.kubevirt.io/v1beta1 datavolumes")
            if not hook.get("rules"):
                problems.append(f"{where}: no rules")
    report.check(
        f"{count} admission webhook(s) name a Service, port and served path, fail closed",
        problems,
    )


def check_alerts(report: Report, docs: list[Doc]) -> None:
    """Every cdi metric an alert's expression names is one the components define."""
    sources = "".join(
        p.read_text() for p in ROOT.glob("*/src/**/*.rs") if "target" not in p.parts
    )
    problems = []
    rules = 0
    for d in docs:
        if d.kind != "PrometheusRule":
            continue
        for group in d.body.get("spec", {}).get("groups", []):
            for rule in group.get("rules", []):
                rules += 1
                expr = rule.get("expr", "")
                for metric in re.findall(r"kubevirt_cdi_\w+", expr):
                    if f'"{metric}' not in sources and f'"{metric.removeprefix("kubevirt_cdi_")}' not in sources:
                        problems.append(f"{d.where()}: {rule.get('alert')} uses {metric}, which no component defines")
                if not rule.get("for") or not rule.get("annotations", {}).get("summary"):
                    problems.append(f"{d.where()}: {rule.get('alert')} needs `for` and a summary")
    report.check(f"{rules} alert rules name metrics the components export", problems)


def workspace_members() -> list[str]:
    text = (ROOT / "Cargo.toml").read_text()
    try:
        import tomllib

        return list(tomllib.loads(text)["workspace"]["members"])
    except ImportError:  # Python < 3.11
        m = re.search(r"^members\s*=\s*\[(.*?)\]", text, re.S | re.M)
        return re.findall(r'"([^"]+)"', m.group(1)) if m else []


def check_containerfiles(report: Report, deployment: dict) -> None:
    members = workspace_members()
    wanted_images = set()
    if deployment:
        wanted_images = set(deployment["images"]) | {
            deployment["env"].get(name) for name in ("IMPORTER_IMAGE", "UPLOADSERVER_IMAGE")
        }
    tagged: set[str] = set()
    for file, package in IMAGES.items():
        path = DEPLOY / "images" / file
        problems: list[str] = []
        if not path.is_file():
            report.check(f"images/{file}", ["missing"])
            continue
        text = path.read_text()
        lines = [l.strip() for l in re.sub(r"\\\n", " ", text).splitlines()]
        copied = set()
        for line in lines:
            if line.startswith("COPY ") and "--from=" not in line:
                copied.update(line.split()[1:-1])
        for needed in ["Cargo.toml", "Cargo.lock", *members]:
            if needed not in copied:
                problems.append(f"does not COPY {needed} (cargo needs every workspace member)")
        if not any(
            l.startswith("RUN ") and "cargo build" in l and "--release" in l and "--locked" in l
            and re.search(rf"-p\s+{re.escape(package)}\b", l)
            for l in lines
        ):
            problems.append(f"no RUN cargo build --release --locked -p {package}")
        froms = [l for l in lines if l.startswith("FROM ")]
        if len(froms) < 2:
            problems.append("not multi-stage (a build stage and a runtime stage)")
        entry = [l for l in lines if l.startswith("ENTRYPOINT ")]
        if not entry or package not in entry[-1]:
            problems.append(f"ENTRYPOINT does not run {package}")
        users = [l.split()[1] for l in lines if l.startswith("USER ")]
        if not users or users[-1].split(":")[0] in ("root", "0"):
            problems.append("the runtime stage runs as root")
        if package == "cdi-importer" and (not users or users[-1].split(":")[0] != "107"):
            problems.append("importer does not run as UID 107 (the worker pods' runAsUser)")
        tags = set(re.findall(r"-t\s+(\S+)", text))
        tagged |= tags
        if not tags:
            problems.append("no build command with -t IMAGE in its comments")
        report.check(f"images/{file}: multi-stage, copies {len(members)} members, "
                     f"builds {package} --locked, non-root", problems)
    problems = [
        f"the Deployment uses {img}, which no Containerfile builds"
        for img in sorted(i for i in wanted_images if i and i not in tagged)
    ]
    report.check("the Deployment's images are the ones the Containerfiles build", problems)


def main() -> int:
    report = Report()
    docs = load_manifests(report)
    crds = load_crds(report)
    check_kustomization(report, docs)
    check_kinds_and_namespaces(report, docs, crds)
    check_rbac(report, docs)
    deployment = check_deployments(report, docs)
    check_api_services(report, docs)
    check_webhooks(report, docs)
    check_alerts(report, docs)
    check_containerfiles(report, deployment)
    if report.problems:
        print(f"\n{len(report.problems)} problem(s) in {report.checks} checks")
        return 1
    print(f"\nall {report.checks} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
