#!/usr/bin/env python3
"""Structural check of the Kubernetes manifests in deploy/kubernetes.

What peco needs from them, beyond what the Kubernetes schema says (k8s_schema.cjs checks that):

- kustomization.yaml lists every manifest of the folder, and only those;
- every object has apiVersion, kind, metadata.name and the label app.kubernetes.io/part-of: peco;
- workloads: the selector matches the pod labels; pods run as non-root, containers without
  privilege escalation and with resource requests; every volume mount has a volume (or a claim
  template), every claim a PersistentVolumeClaim in the set, every $(VAR) in args an env entry;
  readiness and liveness probes call gRPC health on the daemon's --listen port, which is a
  container port; the Prometheus scrape annotations name the --metrics_listen port;
- the coordinator is a StatefulSet of one pod whose --data_dir is on a volume claim template,
  governed by a headless Service, and a Service exposes its --listen port;
- workers are DaemonSets: one requests nvidia.com/gpu and offers as many (--gpus) with at least as
  many CPU slots, one requests no GPU (--gpus=0, the CPU variant); each dials a Service of the set at its port (--coordinator),
  reads its token from a mounted secret (--token_file) and works on a mounted volume (--work_dir).

With --json-out FILE it writes the objects ({"file", "object"} pairs) as JSON for k8s_schema.cjs.

Usage: /usr/bin/python3 tests/deploy/check_kubernetes.py SOURCE_DIR [--json-out FILE]
"""

import glob
import json
import os
import re
import sys

import yaml

FOLDER = "deploy/kubernetes"
DAEMONS = {"/usr/local/bin/peco-coordinator": "coordinator", "/usr/local/bin/peco-worker": "worker"}


class Checker:
    def __init__(self):
        self.problems = []

    def require(self, condition, where, message):
        if not condition:
            self.problems.append("%s: %s" % (where, message))
        return condition


def flag_values(args):
    values = {}
    for arg in args:
        match = re.match(r"--([a-z_]+)=(.*)$", str(arg))
        if match:
            values[match.group(1)] = match.group(2)
    return values


def port_of(address):
    return int(address.rsplit(":", 1)[1]) if address and ":" in address else None


def load(source_dir, check):
    folder = os.path.join(source_dir, FOLDER)
    with open(os.path.join(folder, "kustomization.yaml"), encoding="utf-8") as f:
        kustomization = yaml.safe_load(f)
    listed = kustomization.get("resources") or []
    present = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.yaml"))
                     if os.path.basename(p) != "kustomization.yaml")
    for name in listed:
        check.require(name in present, "kustomization.yaml", "lists %s, which is missing" % name)
    for name in present:
        check.require(name in listed, "kustomization.yaml", "does not list %s" % name)
    objects = []
    for name in present:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            for document in yaml.safe_load_all(f):
                if document is not None:
                    objects.append((name, document))
    return objects


def check_pod(check, where, workload, objects):
    spec = workload["spec"]
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    check.require(selector and all(labels.get(k) == v for k, v in selector.items()), where,
                  "selector.matchLabels must match the pod template's labels")
    pod = template.get("spec") or {}
    check.require((pod.get("securityContext") or {}).get("runAsNonRoot") is True, where,
                  "pods must run as non-root (securityContext.runAsNonRoot)")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    claim_templates = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []}
    claims = {o["metadata"]["name"] for _, o in objects if o.get("kind") == "PersistentVolumeClaim"}
    for volume in volumes.values():
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            check.require(claim in claims, where, "volume %s: no PersistentVolumeClaim %s"
                          % (volume["name"], claim))
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    daemons = []
    for container in pod.get("containers") or []:
        cwhere = "%s container %s" % (where, container.get("name"))
        command = (container.get("command") or [None])[0]
        daemon = DAEMONS.get(command)
        if not check.require(daemon, cwhere, "command must be one of %s" % ", ".join(DAEMONS)):
            continue
        args = container.get("args") or []
        flags = flag_values(args)
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts") or []}
        for mount in mounts.values():
            check.require(mount["name"] in volumes or mount["name"] in claim_templates, cwhere,
                          "volume mount %s has no volume" % mount["name"])
        env = {e["name"] for e in container.get("env") or []}
        for arg in args:
            for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(arg)):
                check.require(var in env, cwhere, "args use $(%s), which env does not define" % var)
        check.require(container.get("image"), cwhere, "no image")
        check.require((container.get("resources") or {}).get("requests"), cwhere,
                      "no resource requests")
        security = container.get("securityContext") or {}
        check.require(security.get("allowPrivilegeEscalation") is False, cwhere,
                      "securityContext.allowPrivilegeEscalation must be false")
        container_ports = {p["containerPort"]: p.get("name") for p in container.get("ports") or []}
        listen = port_of(flags.get("listen"))
        check.require(listen in container_ports, cwhere,
                      "--listen port %s must be a container port" % listen)
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if probe == "startupProbe" and probe not in container:
                continue  # optional
            grpc = (container.get(probe) or {}).get("grpc") or {}
            check.require(grpc.get("port") == listen, cwhere,
                          "%s must call gRPC health on the --listen port %s" % (probe, listen))
        metrics = port_of(flags.get("metrics_listen"))
        check.require(metrics in container_ports, cwhere,
                      "--metrics_listen port %s must be a container port" % metrics)
        check.require(annotations.get("prometheus.io/scrape") == "true", where,
                      'needs the annotation prometheus.io/scrape: "true"')
        check.require(annotations.get("prometheus.io/port") == str(metrics), where,
                      "annotation prometheus.io/port must be the --metrics_listen port %s"
                      % metrics)
        check.require(annotations.get("prometheus.io/path") == "/metrics", where,
                      "annotation prometheus.io/path must be /metrics")
        daemons.append((daemon, container, flags, mounts, volumes, container_ports))
    return daemons


def mounted_from(path, mounts):
    """The mount a path lies under, or None."""
    for mount_path, mount in mounts.items():
        if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
            return mount
    return None


def service_port(service, container_ports):
    """Container port numbers a Service's ports lead to."""
    numbers = {name: number for number, name in container_ports.items() if name}
    result = {}
    for port in service["spec"].get("ports") or []:
        target = port.get("targetPort", port["port"])
        result[port["port"]] = numbers.get(target, target)
    return result


def check_objects(check, objects):
    services = [o for _, o in objects if o.get("kind") == "Service"]
    coordinators, gpu_workers, cpu_workers = 0, 0, 0
    for name, obj in objects:
        where = "%s %s/%s" % (name, obj.get("kind"), (obj.get("metadata") or {}).get("name"))
        for field in ("apiVersion", "kind", "metadata"):
            check.require(field in obj, where, "missing %s" % field)
        metadata = obj.get("metadata") or {}
        check.require(metadata.get("name"), where, "missing metadata.name")
        check.require((metadata.get("labels") or {}).get("app.kubernetes.io/part-of") == "peco",
                      where, "needs the label app.kubernetes.io/part-of: peco")
        if obj.get("kind") not in ("StatefulSet", "DaemonSet"):
            continue
        for daemon, container, flags, mounts, volumes, ports in check_pod(check, where, obj,
                                                                          objects):
            pod_labels = obj["spec"]["template"]["metadata"]["labels"]
            selecting = [s for s in services
                         if all(pod_labels.get(k) == v
                                for k, v in (s["spec"].get("selector") or {}).items())]
            if daemon == "coordinator":
                coordinators += 1
                check.require(obj["kind"] == "StatefulSet", where,
                              "the coordinator is a StatefulSet")
                check.require(obj["spec"].get("replicas") == 1, where,
                              "a service has exactly one coordinator: replicas 1")
                governing = [s for s in selecting
                             if s["metadata"]["name"] == obj["spec"].get("serviceName")]
                check.require(governing and governing[0]["spec"].get("clusterIP") == "None", where,
                              "serviceName must name a headless Service selecting its pods")
                data = mounted_from(flags.get("data_dir", ""), mounts)
                templates = {c["metadata"]["name"]
                             for c in obj["spec"].get("volumeClaimTemplates") or []}
                check.require(data and data["name"] in templates, where,
                              "--data_dir must be on a volume claim template")
                listen = port_of(flags.get("listen"))
                check.require(any(listen in service_port(s, ports).values() for s in selecting),
                              where, "no Service exposes the --listen port %s" % listen)
                continue
            check.require(obj["kind"] == "DaemonSet", where, "workers are a DaemonSet")
            limits = (container.get("resources") or {}).get("limits") or {}
            gpus = int(limits.get("nvidia.com/gpu", 0))
            check.require(str(gpus) == flags.get("gpus"), where,
                          "--gpus=%s must equal the nvidia.com/gpu limit %d"
                          % (flags.get("gpus"), gpus))
            if gpus > 0:
                gpu_workers += 1
                # A rank asks for a CPU slot besides its GPUs unless its spec says cpu_slots: 0.
                slots = flags.get("cpu_slots", "")
                check.require(not slots.isdigit() or int(slots) >= gpus, where,
                              "--cpu_slots=%s leaves GPU ranks without their CPU slot" % slots)
            else:
                cpu_workers += 1
            host, _, port = flags.get("coordinator", "").rpartition(":")
            target = [s for s in services if s["metadata"]["name"] == host.split(".")[0]]
            check.require(target and any(p["port"] == int(port or 0)
                                         for p in target[0]["spec"].get("ports") or []), where,
                          "--coordinator must be a Service of the set and its port")
            token = mounted_from(flags.get("token_file", ""), mounts)
            check.require(token and "secret" in volumes.get(token["name"], {}), where,
                          "--token_file must be on a mounted secret")
            check.require(mounted_from(flags.get("work_dir", ""), mounts), where,
                          "--work_dir must be on a mounted volume")
    check.require(coordinators == 1, FOLDER, "needs one coordinator, found %d" % coordinators)
    check.require(gpu_workers >= 1, FOLDER, "needs a worker DaemonSet requesting nvidia.com/gpu")
    check.require(cpu_workers >= 1, FOLDER, "needs a CPU worker DaemonSet (no GPU)")


def main(argv):
    args = argv[1:]
    json_out = None
    if "--json-out" in args:
        i = args.index("--json-out")
        json_out = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    check = Checker()
    objects = load(args[0], check)
    try:
        check_objects(check, objects)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        check.problems.append("malformed manifest: %r" % error)
    if json_out:
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump([{"file": name, "object": obj} for name, obj in objects], f)
    print("kubernetes: %d objects in %s" % (len(objects), FOLDER))
    for problem in check.problems:
        print("FAIL: " + problem)
    return 1 if check.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
