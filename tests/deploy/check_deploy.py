#!/usr/bin/python3
"""Checks the deployment files under deploy/ against each other and
against the built binaries.

    check_deploy.py SRC_DIR BUILD_DIR [--no-self-test]

What it checks (each failure is one line naming the file):
  - every YAML file parses;
  - Kubernetes objects: kind/apiVersion/metadata.name/namespace; every
    StatefulSet has a headless Service (clusterIP None, not-ready
    addresses published) selecting exactly its pods, volumeClaimTemplates
    mounted by its container, a TCP readiness probe on a container port,
    resource requests, and exactly one PodDisruptionBudget (maxUnavailable
    1) selecting exactly its pods; every <pod>.<svc>.<ns>.svc.cluster.local
    name is a real pod of a real StatefulSet on a port of its Service;
    each pod's --id (from its ordinal, by running the container's shell
    wrapper with stand-in binaries) and --peers agree with its DNS name;
  - compose: volumes, networks and depends_on name defined ones, no named
    volume is shared by two services, the build's Dockerfile exists, and
    every group's --id/--peers agree with the service names;
  - systemd: the settings that matter are there, --data is the unit's
    StateDirectory, every variable ExecStart uses is in the example env
    file and every variable there is used; `systemd-analyze verify` on
    copies whose ExecStart runs the build tree's binaries, when that tool
    is installed;
  - the Dockerfile's runtime stage installs packages that provide every
    shared library the built binaries load (when dpkg is there);
  - every command line in every file (ExecStart with the example env,
    compose commands, Kubernetes commands, the join lists) uses flags the
    binaries list in --help, gives the required ones, and is accepted as a
    whole: the binary is run with that exact command line plus --help,
    which parses and validates every flag and starts nothing;
  - the shard-master list every server and job is given is the shard
    master's --peers, and every join lists a group's --peers in order;
  - shardkv-join's decisions, against a stand-in shardctl.
Then, unless --no-self-test, it breaks copies of the files in known ways
and requires each copy to fail, so the checks above cannot silently pass.

Exit status: 0 all good; 1 a check failed (each failure printed); 2 usage
or a missing prerequisite (binaries not built).
"""

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

PROG = "check_deploy"
BINARIES = {
    "shardmaster": "shardmaster/shardmaster",
    "shardkv": "shardkv/shardkv",
    "shardctl": "clerk/shardctl",
    "kvcli": "clerk/kvcli",
}
SERVERS = ("shardmaster", "shardkv")
JOIN = "shardkv-join"
JOIN_SRC = "deploy/docker/shardkv-join.sh"
SHELLS = ("sh", "bash", "dash")
# Libraries that only sanitizer builds load; the image is a release build.
SANITIZER_LIB = re.compile(r"^lib(asan|ubsan|lsan|tsan)\.so")
DNS_NAME = re.compile(
    r"([a-z0-9][a-z0-9-]*)\.([a-z0-9][a-z0-9-]*)\.([a-z0-9][a-z0-9-]*)"
    r"\.svc\.cluster\.local:(\d+)")
K8S_API = {
    "Namespace": "v1",
    "Service": "v1",
    "StatefulSet": "apps/v1",
    "PodDisruptionBudget": "policy/v1",
    "Job": "batch/v1",
}
# One subprocess result per (argv, env, input files) for the whole run: the
# self-test re-checks many copies that mostly run the same command lines.
_run_cache = {}


def run(argv, env=None, files=(), timeout=30, key=None):
    """subprocess.run, cached by argv and env (or by key, for command lines
    naming temporary paths) and the contents of files; returns
    (returncode, stdout, stderr)."""
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            h.update(fh.read())
    key = (tuple(key or argv), tuple(sorted((env or {}).items())),
           h.hexdigest())
    if key not in _run_cache:
        try:
            p = subprocess.run(argv, env=env, capture_output=True,
                               text=True, timeout=timeout)
            _run_cache[key] = (p.returncode, p.stdout, p.stderr)
        except (OSError, subprocess.TimeoutExpired) as e:
            _run_cache[key] = (127, "", str(e))
    return _run_cache[key]


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v
                                  for k, v in selector.items())


def split_addrs(s):
    return [a for a in s.split(",") if a]


def addr_port(a):
    return a.rsplit(":", 1)[1] if ":" in a else ""


class Help:
    """What one binary's --help lists: its flags, which take a value, which
    are required, and the text itself."""

    def __init__(self, text):
        self.text = text
        self.flags = {}  # name -> takes a value
        self.required = set()
        for line in text.splitlines():
            m = re.match(r"^\s+((?:-h, )?--[a-z][a-z0-9-]*)( \S+)?(\s{2,}|$)",
                         line)
            if not m:
                continue
            name = m.group(1).split("--", 1)[1]
            self.flags[name] = m.group(2) is not None
            if "(required)" in line:
                self.required.add(name)


class Invocation:
    """One command line of a project binary found in a deployment file."""

    def __init__(self, where, argv, env=None, context=None):
        self.where = where
        self.argv = list(argv)
        self.env = dict(env or {})
        self.context = dict(context or {})  # what the file says it is
        self.flags = {}
        self.positional = []

    @property
    def name(self):
        return os.path.basename(self.argv[0])

    def get(self, flag):
        return self.flags.get(flag)


class Checker:
    def __init__(self, src, build):
        self.src = src
        self.build = build
        self.errors = []
        self.notes = []
        self.help = {}
        self.invocations = []

    # ---- reporting

    def err(self, path, msg):
        if path.startswith(self.src + os.sep):
            path = os.path.relpath(path, self.src)
        self.errors.append(f"{path}: {msg}")

    def note(self, msg):
        if msg not in self.notes:
            self.notes.append(msg)

    def path(self, *parts):
        return os.path.join(self.src, *parts)

    # ---- the binaries

    def binary(self, name):
        return os.path.join(self.build, BINARIES[name])

    def load_help(self):
        for name in BINARIES:
            b = self.binary(name)
            if not os.access(b, os.X_OK):
                print(f"{PROG}: {b} is not built (build the tree first: "
                      f"cmake --build {self.build})", file=sys.stderr)
                sys.exit(2)
            rc, out, err = run([b, "--help"], env=self.clean_env(),
                               files=[b])
            if rc != 0 or "--" not in out:
                print(f"{PROG}: {b} --help failed (exit {rc}): {err}",
                      file=sys.stderr)
                sys.exit(2)
            self.help[name] = Help(out)

    @staticmethod
    def clean_env(extra=None):
        env = {"PATH": "/usr/bin:/bin"}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        env.update(extra or {})
        return env

    # ---- YAML

    def load_yaml(self, path):
        try:
            with open(path) as f:
                return [d for d in yaml.safe_load_all(f) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            self.err(path, f"does not parse as YAML: {e}")
            return None

    def check_yaml_files(self):
        n = 0
        for root, _, files in os.walk(self.path("deploy")):
            for f in sorted(files):
                if f.endswith((".yaml", ".yml")):
                    self.load_yaml(os.path.join(root, f))
                    n += 1
        if n == 0:
            self.err(self.path("deploy"), "no YAML file found")

    # ---- command lines

    def parse_flags(self, inv):
        h = self.help.get(inv.name)
        args = inv.argv[1:]
        i = 0
        while i < len(args):
            a = args[i]
            i += 1
            if a == "--":
                inv.positional += args[i:]
                break
            if not a.startswith("--"):
                inv.positional.append(a)
                continue
            name, eq, val = a[2:].partition("=")
            if name not in h.flags:
                self.err(inv.where, f"{inv.name}: unknown flag --{name} "
                         f"(not in `{inv.name} --help`)")
                continue
            if h.flags[name] and not eq:
                if i >= len(args):
                    self.err(inv.where, f"{inv.name}: --{name} has no "
                             "value")
                    break
                val = args[i]
                i += 1
            inv.flags[name] = val if (eq or h.flags[name]) else "true"

    def check_invocation(self, inv):
        """Flag names against --help, required flags, then the whole line
        through the binary's own parser (line + --help starts nothing)."""
        if inv.name == JOIN:
            self.check_join_args(inv)
            self.invocations.append(inv)
            return
        if inv.name not in BINARIES:
            self.err(inv.where, f"runs '{inv.argv[0]}', none of "
                     f"{', '.join(BINARIES)} or {JOIN}")
            return
        self.parse_flags(inv)
        h = self.help[inv.name]
        if inv.name in SERVERS:
            if inv.positional:
                self.err(inv.where, f"{inv.name}: unexpected arguments "
                         f"{inv.positional}")
            for r in sorted(h.required):
                if r not in inv.flags:
                    self.err(inv.where, f"{inv.name}: required flag --{r} "
                             "missing")
        if (inv.name != "shardmaster" and "masters" not in inv.flags and
                not inv.env.get("SHARDKV_MASTERS")):
            self.err(inv.where, f"{inv.name}: neither --masters nor "
                     "SHARDKV_MASTERS is given")
        rc, _, err = run([self.binary(inv.name)] + inv.argv[1:] +
                         ["--help"], env=self.clean_env(),
                         files=[self.binary(inv.name)])
        if rc != 0:
            last = err.strip().splitlines()[:1] or [f"exit {rc}"]
            self.err(inv.where, f"{inv.name} refuses this command line: "
                     f"{last[0]}  (argv: {shlex.join(inv.argv)})")
        self.invocations.append(inv)

    def check_join_args(self, inv):
        if not inv.argv[1:]:
            self.err(inv.where, f"{JOIN} without groups")
        for g in inv.argv[1:]:
            m = re.fullmatch(r"([1-9][0-9]*)=(\S+)", g)
            if not m or not all(":" in a for a in split_addrs(m.group(2))):
                self.err(inv.where, f"{JOIN}: '{g}' is not GID=ADDR,...")

    # ---- relations between the command lines of one deployment

    def check_cluster(self, where, invs, host_of):
        """invs: the invocations of one deployment (compose, k8s). host_of
        maps an invocation to the host:port it must be reachable at, or
        None when the file cannot say."""
        groups = {}
        for inv in invs:
            if inv.name in SERVERS:
                key = ("sm",) if inv.name == "shardmaster" else \
                    ("kv", inv.get("gid"))
                groups.setdefault(key, []).append(inv)
        sm = groups.get(("sm",), [])
        if not sm:
            self.err(where, "no shardmaster server")
        masters = None
        for key, members in sorted(groups.items(), key=str):
            peers = {m.get("peers") for m in members}
            label = "the shard master" if key[0] == "sm" else \
                f"group {key[1]}"
            if len(peers) != 1:
                self.err(where, f"{label}: replicas disagree on --peers: "
                         f"{sorted(p or '' for p in peers)}")
                continue
            plist = split_addrs(peers.pop() or "")
            if key[0] == "sm":
                masters = plist
            ids = sorted(int(m.get("id") or 0) for m in members)
            if ids != list(range(1, len(plist) + 1)):
                self.err(where, f"{label}: --id values {ids} are not "
                         f"1..{len(plist)} (one per --peers entry)")
            for m in members:
                i = int(m.get("id") or 0)
                if not 1 <= i <= len(plist):
                    continue
                own = host_of(m)
                if own is not None and plist[i - 1] != own:
                    self.err(m.where, f"{label}: replica --id {i} is "
                             f"{own}, but --peers entry {i} is "
                             f"{plist[i - 1]}")
                listen = m.get("listen")
                if listen and addr_port(listen) != addr_port(plist[i - 1]):
                    self.err(m.where, f"{label}: --listen {listen} is not "
                             f"the port of its --peers entry "
                             f"{plist[i - 1]}")
        if masters is not None:
            for inv in invs:
                if inv.name == "shardmaster":
                    continue
                given = inv.get("masters") or inv.env.get("SHARDKV_MASTERS")
                if given is not None and split_addrs(given) != masters:
                    self.err(inv.where, f"{inv.name}: shard masters "
                             f"{given} are not the shard master's --peers "
                             f"{','.join(masters)}")
        kv = {k[1]: split_addrs(v[0].get("peers") or "")
              for k, v in groups.items() if k[0] == "kv"}
        joined = set()
        for inv in invs:
            if inv.name != JOIN:
                continue
            for g in inv.argv[1:]:
                gid, _, addrs = g.partition("=")
                joined.add(gid)
                if gid not in kv:
                    self.err(inv.where, f"{JOIN}: group {gid} has no "
                             "servers here")
                elif split_addrs(addrs) != kv[gid]:
                    self.err(inv.where, f"{JOIN}: group {gid} joined as "
                             f"{addrs}, but its --peers are "
                             f"{','.join(kv[gid])}")
        for gid in sorted(set(kv) - joined, key=str):
            self.err(where, f"group {gid} is never joined ({JOIN})")

    # ---- Kubernetes

    def check_k8s(self):
        kdir = self.path("deploy", "k8s")
        objs = []
        files = sorted(f for f in os.listdir(kdir)
                       if f.endswith((".yaml", ".yml")))
        for f in files:
            p = os.path.join(kdir, f)
            if f in ("kustomization.yaml", "kustomization.yml"):
                self.check_kustomization(p, files)
                continue
            docs = self.load_yaml(p)
            for d in docs or []:
                if not isinstance(d, dict):
                    self.err(p, "a document that is not a mapping")
                    continue
                objs.append((p, d))
        namespaces = [d["metadata"]["name"] for p, d in objs
                      if d.get("kind") == "Namespace" and
                      isinstance(d.get("metadata"), dict) and
                      d["metadata"].get("name")]
        if len(namespaces) != 1:
            self.err(kdir, f"expected one Namespace, found {namespaces}")
        ns = namespaces[0] if namespaces else None
        seen = set()
        for p, d in objs:
            kind = d.get("kind")
            meta = d.get("metadata") if isinstance(d.get("metadata"),
                                                   dict) else {}
            name = meta.get("name")
            if not kind or not d.get("apiVersion") or not name:
                self.err(p, f"object without kind, apiVersion or "
                         f"metadata.name: {kind} {name}")
                continue
            if kind not in K8S_API:
                self.err(p, f"{kind} {name}: kind not known to this check "
                         f"({', '.join(K8S_API)})")
            elif d["apiVersion"] != K8S_API[kind]:
                self.err(p, f"{kind} {name}: apiVersion {d['apiVersion']},"
                         f" expected {K8S_API[kind]}")
            if (kind, name) in seen:
                self.err(p, f"{kind} {name} defined twice")
            seen.add((kind, name))
            if kind != "Namespace" and meta.get("namespace") != ns:
                self.err(p, f"{kind} {name}: namespace "
                         f"{meta.get('namespace')}, expected {ns}")
        by_kind = {}
        for p, d in objs:
            if isinstance(d.get("metadata"), dict):
                by_kind.setdefault(d.get("kind"), []).append((p, d))
        services = {d["metadata"].get("name"): (p, d)
                    for p, d in by_kind.get("Service", [])}
        stss = by_kind.get("StatefulSet", [])
        pdbs = by_kind.get("PodDisruptionBudget", [])
        if not stss:
            self.err(kdir, "no StatefulSet")
        pods = []  # (sts path, sts, its pod template labels)
        for p, s in stss:
            spec = s.get("spec") or {}
            tmpl = ((spec.get("template") or {}).get("metadata") or
                    {}).get("labels") or {}
            pods.append((p, s, tmpl))
        sts_info = {}
        for p, s, tmpl in pods:
            info = self.check_sts(p, s, tmpl, services, pods, ns)
            if info:
                sts_info[s["metadata"]["name"]] = info
        for p, s, tmpl in pods:
            name = s["metadata"]["name"]
            mine = [(pp, b) for pp, b in pdbs if labels_match(
                ((b.get("spec") or {}).get("selector") or {}).get(
                    "matchLabels"), tmpl)]
            if len(mine) != 1:
                self.err(p, f"StatefulSet {name}: {len(mine)} "
                         "PodDisruptionBudgets select its pods, expected 1")
        for pp, b in pdbs:
            spec = b.get("spec") or {}
            sel = (spec.get("selector") or {}).get("matchLabels")
            hits = [s["metadata"]["name"] for _, s, t in pods
                    if labels_match(sel, t)]
            bname = b["metadata"]["name"]
            if len(hits) != 1:
                self.err(pp, f"PodDisruptionBudget {bname}: selector "
                         f"{sel} selects the pods of {hits or 'nothing'}, "
                         "expected exactly one StatefulSet")
            if spec.get("maxUnavailable") != 1:
                self.err(pp, f"PodDisruptionBudget {bname}: maxUnavailable"
                         f" {spec.get('maxUnavailable')}, expected 1")
        for p, d in objs:
            self.check_dns_names(p, d, sts_info, services, ns)
        invs = []
        for p, s, _ in pods:
            invs += self.k8s_sts_invocations(p, s, sts_info, ns)
        for p, j in by_kind.get("Job", []):
            tspec = ((j.get("spec") or {}).get("template") or {}).get(
                "spec") or {}
            if tspec.get("restartPolicy") not in ("OnFailure", "Never"):
                self.err(p, f"Job {j['metadata']['name']}: restartPolicy "
                         "must be OnFailure or Never")
            for c in tspec.get("containers") or []:
                argv, env = self.k8s_argv(p, c, {})
                for a in argv:
                    inv = Invocation(f"{p} (Job {j['metadata']['name']})",
                                     a, env)
                    self.check_invocation(inv)
                    invs.append(inv)

        def host_of(inv):
            return inv.context.get("dns")

        self.check_cluster(kdir, invs, host_of)
        if shutil.which("kubectl"):
            rc, out, err = run(["kubectl", "kustomize", kdir],
                               files=[os.path.join(kdir, f) for f in files],
                               key=["kubectl", "kustomize"])
            if rc != 0:
                self.err(kdir, f"kubectl kustomize fails: {err.strip()}")
        else:
            self.note("kubectl not installed: `kubectl kustomize` skipped")

    def check_kustomization(self, p, files):
        docs = self.load_yaml(p)
        if not docs:
            return
        k = docs[0]
        res = k.get("resources") or []
        for r in res:
            if not os.path.exists(os.path.join(os.path.dirname(p), r)):
                self.err(p, f"resource {r} does not exist")
        for f in files:
            if f not in res and not f.startswith("kustomization."):
                self.err(p, f"{f} is not listed in resources")

    def check_sts(self, p, s, tmpl, services, pods, ns):
        name = s["metadata"]["name"]
        spec = s.get("spec") or {}
        where = f"StatefulSet {name}"
        sel = (spec.get("selector") or {}).get("matchLabels")
        if not labels_match(sel, tmpl):
            self.err(p, f"{where}: selector {sel} does not match its pod "
                     f"template labels {tmpl}")
        replicas = spec.get("replicas")
        if not isinstance(replicas, int) or replicas < 3 or \
                replicas % 2 == 0:
            self.err(p, f"{where}: replicas {replicas}: a Raft group needs "
                     "an odd number, at least 3")
            replicas = replicas if isinstance(replicas, int) else 0
        svc_name = spec.get("serviceName")
        svc = services.get(svc_name)
        ports = set()
        if not svc:
            self.err(p, f"{where}: serviceName {svc_name} is no Service "
                     "defined here")
        else:
            sp, sd = svc
            sspec = sd.get("spec") or {}
            if sspec.get("clusterIP") != "None":
                self.err(sp, f"Service {svc_name} (of {where}) is not "
                         "headless: clusterIP must be None")
            if sspec.get("publishNotReadyAddresses") is not True:
                self.err(sp, f"Service {svc_name}: publishNotReadyAddresses"
                         " must be true (peers must resolve before they "
                         "are ready)")
            hits = [x["metadata"]["name"] for _, x, t in pods
                    if labels_match(sspec.get("selector"), t)]
            if hits != [name]:
                self.err(sp, f"Service {svc_name}: selector selects the "
                         f"pods of {hits or 'nothing'}, expected {name}")
            ports = {str(x.get("port")) for x in sspec.get("ports") or []}
        if spec.get("podManagementPolicy") != "Parallel":
            self.err(p, f"{where}: podManagementPolicy must be Parallel "
                     "(no replica can elect a leader alone)")
        vcts = [v.get("metadata", {}).get("name")
                for v in spec.get("volumeClaimTemplates") or []]
        if not vcts:
            self.err(p, f"{where}: no volumeClaimTemplates (its data would "
                     "not survive the pod)")
        for v in spec.get("volumeClaimTemplates") or []:
            vs = v.get("spec") or {}
            if not vs.get("accessModes") or not (
                    (vs.get("resources") or {}).get("requests") or
                    {}).get("storage"):
                self.err(p, f"{where}: volumeClaimTemplate "
                         f"{v.get('metadata', {}).get('name')} lacks "
                         "accessModes or a storage request")
        pspec = (spec.get("template") or {}).get("spec") or {}
        vols = {v.get("name") for v in pspec.get("volumes") or []}
        containers = pspec.get("containers") or []
        if not containers:
            self.err(p, f"{where}: no containers")
        for c in containers:
            cw = f"{where} container {c.get('name')}"
            mounts = [m.get("name") for m in c.get("volumeMounts") or []]
            for m in mounts:
                if m not in vcts and m not in vols:
                    self.err(p, f"{cw}: mounts unknown volume {m}")
            if vcts and not set(vcts) & set(mounts):
                self.err(p, f"{cw}: mounts none of the "
                         f"volumeClaimTemplates {vcts}")
            cports = {}
            for cp in c.get("ports") or []:
                cports[str(cp.get("containerPort"))] = cp
                if cp.get("name"):
                    cports[cp["name"]] = cp
            for sp_ in ((svc[1].get("spec") or {}).get("ports") or []
                        if svc else []):
                t = str(sp_.get("targetPort", sp_.get("port")))
                if t not in cports:
                    self.err(p, f"{cw}: the Service's targetPort {t} is no "
                             "container port")
            probe = (c.get("readinessProbe") or {}).get("tcpSocket")
            if not probe:
                self.err(p, f"{cw}: no TCP readinessProbe")
            elif str(probe.get("port")) not in cports:
                self.err(p, f"{cw}: readiness probe port "
                         f"{probe.get('port')} is no container port")
            req = (c.get("resources") or {}).get("requests") or {}
            if not req.get("cpu") or not req.get("memory"):
                self.err(p, f"{cw}: resources.requests needs cpu and "
                         "memory")
        return {"replicas": replicas, "service": svc_name, "ports": ports,
                "path": p}

    def check_dns_names(self, p, d, sts_info, services, ns):
        text = yaml.safe_dump(d)
        for m in DNS_NAME.finditer(text):
            pod, svc, dns_ns, port = m.groups()
            full = m.group(0)
            base, _, ordinal = pod.rpartition("-")
            info = sts_info.get(base)
            if not info or not ordinal.isdigit():
                self.err(p, f"{full}: {pod} is no pod of a StatefulSet "
                         "here")
                continue
            if int(ordinal) >= info["replicas"]:
                self.err(p, f"{full}: {base} has {info['replicas']} "
                         "replicas")
            if svc != info["service"]:
                self.err(p, f"{full}: {base}'s Service is "
                         f"{info['service']}, not {svc}")
            if dns_ns != ns:
                self.err(p, f"{full}: namespace {dns_ns}, not {ns}")
            if port not in info["ports"]:
                self.err(p, f"{full}: port {port} is not a port of Service "
                         f"{svc} ({sorted(info['ports'])})")

    def k8s_argv(self, p, c, extra_env):
        """The command lines a container runs: argv lists of project
        binaries, with its env. A shell wrapper runs with stand-ins for the
        binaries that record their arguments."""
        env = {e["name"]: str(e.get("value", ""))
               for e in c.get("env") or [] if "name" in e}
        cmd = [str(x) for x in (c.get("command") or []) +
               (c.get("args") or [])]
        if not cmd:
            self.err(p, f"container {c.get('name')}: no command (the image "
                     "has none that runs a server)")
            return [], env
        if os.path.basename(cmd[0]) in SHELLS:
            if "-c" not in cmd:
                self.err(p, f"container {c.get('name')}: a shell without "
                         "-c")
                return [], env
            script = cmd[cmd.index("-c") + 1]
            return self.run_with_stubs(p, script, {**env, **extra_env}), env

        def sub(s):
            return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                          lambda m: env.get(m.group(1), m.group(0)), s)
        return [[sub(x) for x in cmd]], env

    def run_with_stubs(self, p, script, env):
        key = ("stubs", script, tuple(sorted(env.items())))
        if key not in _run_cache:
            _run_cache[key] = self.run_stubbed(p, script, env)
        return _run_cache[key]

    def run_stubbed(self, p, script, env):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "argv")
            for name in list(BINARIES) + [JOIN]:
                stub = os.path.join(tmp, name)
                with open(stub, "w") as f:
                    f.write('#!/bin/sh\nprintf \'%s\\0\' "$0" "$@" '
                            '>> "$STUB_ARGV"\nprintf \'\\1\' '
                            '>> "$STUB_ARGV"\n')
                os.chmod(stub, 0o755)
            e = {**env, "PATH": f"{tmp}:/usr/bin:/bin", "STUB_ARGV": out}
            rc, _, err = run(["/bin/sh", "-c", script], env=e)
            if rc != 0:
                self.err(p, f"container shell wrapper fails (exit {rc}): "
                         f"{err.strip()}")
                return []
            if not os.path.exists(out):
                self.err(p, "container shell wrapper runs none of the "
                         "project's binaries")
                return []
            with open(out) as f:
                raw = f.read()
        argvs = []
        for rec in raw.split("\1"):
            if rec:
                a = rec.split("\0")[:-1]
                argvs.append([os.path.basename(a[0])] + a[1:])
        return argvs

    def k8s_sts_invocations(self, p, s, sts_info, ns):
        name = s["metadata"]["name"]
        info = sts_info.get(name)
        if not info:
            return []
        port = sorted(info["ports"])[0] if info["ports"] else "?"
        pspec = ((s.get("spec") or {}).get("template") or {}).get(
            "spec") or {}
        invs = []
        for c in pspec.get("containers") or []:
            for ordinal in range(info["replicas"]):
                pod = f"{name}-{ordinal}"
                argvs, env = self.k8s_argv(p, c, {"HOSTNAME": pod})
                servers = [a for a in argvs if a[0] in SERVERS]
                if len(servers) != 1:
                    self.err(p, f"StatefulSet {name} pod {pod}: runs "
                             f"{len(servers)} servers, expected 1")
                    continue
                dns = f"{pod}.{info['service']}.{ns}.svc.cluster.local:" \
                    f"{port}"
                inv = Invocation(f"{p} (pod {pod})", servers[0], env,
                                 {"dns": dns})
                self.check_invocation(inv)
                if inv.get("id") != str(ordinal + 1):
                    self.err(p, f"pod {pod} runs --id {inv.get('id')}, "
                             f"expected {ordinal + 1} (ordinal + 1)")
                if inv.get("data") and not any(
                        inv.get("data").startswith(
                            (m.get("mountPath") or "?").rstrip("/") + "/")
                        for m in c.get("volumeMounts") or []):
                    self.err(p, f"pod {pod}: --data {inv.get('data')} is "
                             "not below a volume mount")
                invs.append(inv)
        return invs

    # ---- compose

    def check_compose(self):
        p = self.path("deploy", "compose", "compose.yaml")
        docs = self.load_yaml(p)
        if not docs:
            return
        d = docs[0]
        services = d.get("services") or {}
        if not services:
            self.err(p, "no services")
        networks = set((d.get("networks") or {}).keys())
        volumes = set((d.get("volumes") or {}).keys())
        used = {}
        invs = []
        for name, s in services.items():
            where = f"{p} (service {name})"
            if not isinstance(s, dict):
                self.err(p, f"service {name} is not a mapping")
                continue
            for v in s.get("volumes") or []:
                src = v.get("source") if isinstance(v, dict) else \
                    str(v).split(":", 1)[0]
                if not src or src.startswith(("/", ".", "~")):
                    continue
                if src not in volumes:
                    self.err(where, f"volume {src} is not defined under "
                             "volumes:")
                used.setdefault(src, []).append(name)
            nets = s.get("networks") or []
            for n in (nets.keys() if isinstance(nets, dict) else nets):
                if n not in networks:
                    self.err(where, f"network {n} is not defined under "
                             "networks:")
            deps = s.get("depends_on") or []
            for dep in (deps.keys() if isinstance(deps, dict) else deps):
                if dep not in services:
                    self.err(where, f"depends_on {dep}: no such service")
            b = s.get("build")
            if b:
                ctx = b if isinstance(b, str) else b.get("context", ".")
                df = "Dockerfile" if isinstance(b, str) else \
                    b.get("dockerfile", "Dockerfile")
                if not os.path.isfile(os.path.join(os.path.dirname(p), ctx,
                                                   df)):
                    self.err(where, f"build: {ctx}/{df} does not exist")
            if not s.get("image") and not b:
                self.err(where, "neither image nor build")
            cmd = s.get("command")
            if cmd is None:
                self.err(where, "no command (the image runs no server by "
                         "default)")
                continue
            argv = shlex.split(cmd) if isinstance(cmd, str) else \
                [str(x) for x in cmd]
            env = s.get("environment") or {}
            if isinstance(env, list):
                env = dict(e.split("=", 1) for e in env if "=" in e)
            inv = Invocation(where, argv, {k: str(v) for k, v in
                                           env.items()}, {"service": name})
            self.check_invocation(inv)
            invs.append(inv)
            if inv.name in SERVERS and not s.get("volumes"):
                self.err(where, "a server without a volume (its data "
                         "would not survive the container)")
            if inv.name == JOIN:
                # compared after the loop: services may come in any order
                inv.context["deps"] = set(deps)
        for v, who in used.items():
            if len(who) > 1:
                self.err(p, f"volume {v} is shared by {who}: every server "
                         "needs its own")
        servers = {i.context["service"] for i in invs if i.name in SERVERS}
        for i in invs:
            if i.name == JOIN and not servers <= i.context.get("deps",
                                                               set()):
                self.err(i.where, f"{JOIN} must depend on every server; "
                         f"missing {sorted(servers - i.context['deps'])}")

        def host_of(inv):
            listen = inv.get("listen")
            port = addr_port(listen) if listen else None
            return f"{inv.context['service']}:{port}" if port else None

        self.check_cluster(p, invs, host_of)
        for tool in (["docker", "compose"], ["docker-compose"]):
            if shutil.which(tool[0]):
                rc, _, err = run(tool + ["version"])
                if rc == 0:
                    rc, _, err = run(tool + ["-f", p, "config", "-q"],
                                     files=[p], key=tool + ["config"])
                    if rc != 0:
                        self.err(p, f"{' '.join(tool)} config: "
                                 f"{err.strip()}")
                    return
        self.note("docker compose not installed: `docker compose config` "
                  "skipped (structure checked here)")

    # ---- systemd

    @staticmethod
    def parse_unit(path):
        sections = {}
        cur = None
        with open(path) as f:
            lines = f.read().replace("\\\n", " ").splitlines()
        for line in lines:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                cur = sections.setdefault(line[1:-1], {})
                continue
            k, _, v = line.partition("=")
            if cur is not None:
                cur.setdefault(k.strip(), []).append(v.strip())
        return sections

    @staticmethod
    def parse_env(path):
        env = {}
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                k, eq, v = line.partition("=")
                if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                    env.setdefault("\0bad", []).append(n)
                    continue
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                    v = v[1:-1]
                env[k] = v
        return env

    def check_systemd(self):
        sdir = self.path("deploy", "systemd")
        units = sorted(f for f in os.listdir(sdir) if f.endswith(".service"))
        if not units:
            self.err(sdir, "no unit")
        want = {
            ("Unit", "Description"): None,
            ("Service", "User"): None,
            ("Service", "EnvironmentFile"): None,
            ("Service", "StateDirectory"): None,
            ("Service", "ExecStart"): None,
            ("Service", "LimitNOFILE"): None,
            ("Service", "Restart"): "on-failure",
            ("Service", "NoNewPrivileges"): "yes",
            ("Service", "ProtectSystem"): "strict",
            ("Install", "WantedBy"): None,
        }
        verify = []
        for u in units:
            p = os.path.join(sdir, u)
            sec = self.parse_unit(p)
            for (s, k), v in want.items():
                got = sec.get(s, {}).get(k)
                if not got or not got[-1]:
                    self.err(p, f"[{s}] {k}= missing")
                elif v is not None and got[-1] != v:
                    self.err(p, f"[{s}] {k}={got[-1]}, expected {v}")
            svc = sec.get("Service", {})
            instance = "100" if "@." in u else ""
            verify.append((p, u.replace("@.", f"@{instance}.")))
            ef = (svc.get("EnvironmentFile") or [""])[-1].lstrip("-")
            example = os.path.join(
                sdir, os.path.basename(ef).replace("-%i", "") + ".example")
            if not os.path.isfile(example):
                self.err(p, f"no example for EnvironmentFile {ef} "
                         f"({os.path.relpath(example, self.src)})")
                continue
            env = self.parse_env(example)
            for n in env.pop("\0bad", []):
                self.err(example, f"line {n} is not VAR=value")
            exe = (svc.get("ExecStart") or [""])[-1].lstrip("-@:+!")
            argv = self.expand_exec(p, exe, env, instance)
            if argv is None:
                continue
            if not argv[0].startswith("/usr/local/bin/"):
                self.err(p, f"ExecStart runs {argv[0]}, expected "
                         "/usr/local/bin/...")
            inv = Invocation(f"{p} with {os.path.basename(example)}", argv,
                             env)
            self.check_invocation(inv)
            state = (svc.get("StateDirectory") or [""])[-1].replace(
                "%i", instance)
            if inv.get("data") != f"/var/lib/{state}":
                self.err(p, f"--data {inv.get('data')} is not the "
                         f"StateDirectory /var/lib/{state} (ProtectSystem="
                         "strict leaves only that writable)")
            used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", exe))
            for k in sorted(set(env) - used):
                if f"${k}" not in self.help.get(inv.name,
                                                Help("")).text:
                    self.err(example, f"{k} is used neither by {u}'s "
                             f"ExecStart nor by {inv.name} (--help)")
            if inv.name in SERVERS:
                plist = split_addrs(inv.get("peers") or "")
                i = int(inv.get("id") or 0)
                listen = inv.get("listen")
                if 1 <= i <= len(plist) and listen and \
                        addr_port(listen) != addr_port(plist[i - 1]):
                    self.err(example, f"--listen {listen} is not the port "
                             f"of its peers entry {plist[i - 1]}")
        self.systemd_verify(verify)

    def expand_exec(self, p, exe, env, instance):
        """ExecStart as systemd runs it: %i, then ${VAR} as one word and a
        bare $VAR split at whitespace."""
        try:
            words = shlex.split(exe.replace("%i", instance).replace(
                "%%", "%"))
        except ValueError as e:
            self.err(p, f"ExecStart does not split: {e}")
            return None
        argv = []
        for w in words:
            m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
            if m:
                if m.group(1) not in env:
                    self.err(p, f"ExecStart uses ${m.group(1)}, not set in "
                             "the example env file")
                argv += env.get(m.group(1), "").split()
                continue

            def sub(mm):
                if mm.group(1) not in env:
                    self.err(p, f"ExecStart uses ${{{mm.group(1)}}}, not "
                             "set in the example env file")
                return env.get(mm.group(1), "")
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, w))
        return argv

    def systemd_verify(self, units):
        tool = shutil.which("systemd-analyze")
        if not tool:
            self.note("systemd-analyze not installed: units checked "
                      "structurally only")
            return
        with tempfile.TemporaryDirectory() as tmp:
            names = []
            for p, inst in units:
                with open(p) as f:
                    text = f.read()
                for name in BINARIES:
                    text = text.replace(f"/usr/local/bin/{name} ",
                                        f"{self.binary(name)} ")
                with open(os.path.join(tmp, os.path.basename(p)), "w") as f:
                    f.write(text)
                names.append(os.path.join(tmp, inst))
            rc, out, err = run([tool, "verify", "--man=no"] + names,
                               env=self.clean_env(),
                               files=[p for p, _ in units],
                               key=[tool, "verify"] + [u for _, u in units])
        msgs = [m for m in (out + err).splitlines() if m.strip()]
        if rc != 0 or msgs:
            for m in msgs or [f"exit {rc}"]:
                self.err(self.path("deploy", "systemd"),
                         f"systemd-analyze verify: {m.replace(tmp + '/', '')}")

    # ---- Dockerfile

    def check_dockerfile(self):
        p = self.path("deploy", "docker", "Dockerfile")
        try:
            with open(p) as f:
                text = f.read()
        except OSError as e:
            self.err(p, str(e))
            return
        lines = text.replace("\\\n", " ").splitlines()
        stages = []
        for line in lines:
            w = line.split()
            if not w or w[0].startswith("#"):
                continue
            op = w[0].upper()
            if op == "FROM":
                stages.append({"image": w[1], "run": [], "copy": []})
            elif not stages:
                if op != "ARG":
                    self.err(p, f"{op} before FROM")
            elif op == "RUN":
                stages[-1]["run"].append(line.split(None, 1)[1])
            elif op == "COPY":
                stages[-1]["copy"].append(w[1:])
        if len(stages) < 2:
            self.err(p, "expected a build stage and a runtime stage")
            return
        for s in stages:
            if not s["image"].startswith("debian:bookworm"):
                self.err(p, f"FROM {s['image']}: expected debian:bookworm")
        for s in stages:
            for c in s["copy"]:
                args = [a for a in c if not a.startswith("--")]
                if any(a.startswith("--from") for a in c):
                    continue
                for a in args[:-1]:
                    if not os.path.exists(self.path(a)):
                        self.err(p, f"COPY {a}: no such file in the "
                                 "repository")
        if "deploy/deps.sh" not in " ".join(stages[0]["run"]):
            self.err(p, "the build stage does not install the packages with "
                     "deploy/deps.sh")
        if JOIN_SRC not in text:
            self.err(p, f"does not install {JOIN_SRC} (compose and "
                     "Kubernetes run it)")
        pkgs = []
        for r in stages[-1]["run"]:
            for part in re.split(r"&&|;", r):
                w = part.split()
                if "apt-get" in w and "install" in w:
                    pkgs += [x for x in w[w.index("install") + 1:]
                             if not x.startswith("-")]
        if not pkgs:
            self.err(p, "the runtime stage installs no package")
        self.check_runtime_libs(p, pkgs)

    def check_runtime_libs(self, p, pkgs):
        if not shutil.which("dpkg-query") or not shutil.which("ldd"):
            self.note("dpkg-query or ldd missing: the runtime stage's "
                      "packages are not checked against the binaries")
            return
        rc, out, _ = run(["dpkg-query", "-W", "-f",
                          "${Package}\t${Provides}\t${Depends}\t"
                          "${Pre-Depends}\n"])
        deps = {}
        for line in out.splitlines():
            f = line.split("\t")
            if len(f) < 4:
                continue
            names = [f[0]] + [x.split()[0] for x in f[1].split(",")
                              if x.strip()]
            alts = []
            for d in (f[2] + "," + f[3]).split(","):
                if d.strip():
                    alts.append([a.split()[0].split(":")[0]
                                 for a in d.split("|")])
            for n in names:
                deps.setdefault(n, []).extend(alts)
        closure = set()
        todo = list(pkgs)
        while todo:
            x = todo.pop()
            if x in closure:
                continue
            closure.add(x)
            for alt in deps.get(x, []):
                todo += alt
        libs = {}  # path -> (soname, the binaries loading it)
        for name in BINARIES:
            b = self.binary(name)
            rc, out, _ = run(["ldd", b], files=[b])
            for line in out.splitlines():
                m = re.match(r"\s*(\S+) => (/\S+)", line)
                if m and not SANITIZER_LIB.match(m.group(1)):
                    libs.setdefault(m.group(2), (m.group(1), []))[1].append(
                        name)
        owners = self.lib_packages(libs)
        for path, (soname, users) in sorted(libs.items()):
            owner = owners.get(path)
            if owner is None:
                self.note(f"no Debian package owns {path}: not checked")
            elif owner not in closure:
                self.err(p, f"{', '.join(users)} load {soname} ({owner}), "
                         "which the runtime stage's packages "
                         f"{pkgs} do not bring in")

    @staticmethod
    def lib_packages(paths):
        """path -> the package owning it, with one dpkg-query for all
        (a library may be known to dpkg under /lib or /usr/lib)."""
        cands = {}
        for path in paths:
            for c in (path, os.path.realpath(path)):
                for x in (c, c[4:] if c.startswith("/usr/") else "/usr" + c):
                    cands.setdefault(x, path)
        _, out, _ = run(["dpkg-query", "-S"] + sorted(cands))
        owners = {}
        for line in out.splitlines():
            pkg, sep, f = line.partition(": ")
            if sep and f in cands:
                owners.setdefault(cands[f], pkg.split(",")[0].split(":")[0])
        return owners

    # ---- the join script

    def check_join_script(self):
        script = self.path(JOIN_SRC)
        if not os.access(script, os.X_OK):
            self.err(script, "missing or not executable")
            return
        with open(script, "rb") as f:
            key = ("join", hashlib.sha256(f.read()).hexdigest())
        if key not in _run_cache:
            before = len(self.errors)
            self.run_join_cases(script)
            _run_cache[key] = self.errors[before:]
        else:
            self.errors += _run_cache[key]

    def run_join_cases(self, script):
        if shutil.which("shellcheck"):
            rc, out, _ = run(["shellcheck", script], files=[script],
                             key=["shellcheck"])
            if rc != 0:
                self.err(script, f"shellcheck: {out.strip()}")
        a = "a:1,b:1,c:1"
        cases = [
            # (the shard master's config, arguments, exit, joined)
            ('{"num":0,"shards":[0],"groups":{}}', [f"100={a}"], 0, True),
            ('{"num":1,"shards":[100],"groups":{"100":["a:1","b:1","c:1"]}}',
             [f"100={a}"], 0, False),
            ('{"num":1,"shards":[100],"groups":{"100":["a:1","c:1","b:1"]}}',
             [f"100={a}"], 1, False),
            ('{"num":1,"shards":[100],"groups":{"100":["a:1","b:1","c:1"]}}',
             [f"10={a}"], 0, True),
            ("", ["100"], 2, False),
        ]
        with tempfile.TemporaryDirectory() as tmp:
            stub = os.path.join(tmp, "shardctl")
            with open(stub, "w") as f:
                f.write(
                    '#!/bin/sh\n'
                    'for a; do last=$a; done\n'
                    'case " $* " in\n'
                    '*" join "*) echo "$*" > "$JOINED"\n'
                    '  cat "$NEXT" > "$CONFIG"; exit 0 ;;\n'
                    '*" query"*) cat "$CONFIG"; exit 0 ;;\n'
                    'esac\nexit 2\n')
            os.chmod(stub, 0o755)
            for n, (cfg, args, code, joins) in enumerate(cases):
                paths = {k: os.path.join(tmp, f"{k}{n}")
                         for k in ("CONFIG", "NEXT", "JOINED")}
                with open(paths["CONFIG"], "w") as f:
                    f.write(cfg)
                with open(paths["NEXT"], "w") as f:
                    # after a join: every group asked for is there
                    gs = ",".join('"{}":["{}"]'.format(
                        g.split("=")[0], g.split("=")[1].replace(
                            ",", '","')) for g in args if "=" in g)
                    f.write('{"num":9,"shards":[0],"groups":{%s}}' % gs)
                env = {**paths, "PATH": f"{tmp}:/usr/bin:/bin",
                       "SHARDKV_JOIN_WAIT": "5"}
                p = subprocess.run([script] + args, env=env, text=True,
                                   capture_output=True, timeout=30)
                joined = os.path.exists(paths["JOINED"])
                if p.returncode != code or joined != joins:
                    self.err(script, f"config {cfg or '-'} with {args}: "
                             f"exit {p.returncode} (expected {code}), "
                             f"{'joined' if joined else 'did not join'} "
                             f"(expected {'a' if joins else 'no'} join): "
                             f"{p.stderr.strip()}")

    # ---- all of it

    def check_all(self):
        self.load_help()
        for part in (self.check_yaml_files, self.check_systemd,
                     self.check_compose, self.check_k8s,
                     self.check_dockerfile, self.check_join_script):
            try:
                part()
            except (KeyError, TypeError, AttributeError, ValueError,
                    IndexError, OSError) as e:
                # a file too broken for the checks that follow
                self.err(self.path("deploy"), f"{part.__name__} could not "
                         f"go on: {type(e).__name__}: {e}")
        return self.errors


# Known breakages: (file, text, replacement, a piece of the expected error
# [, the tool without which the check is skipped]).
MUTATIONS = [
    ("deploy/compose/compose.yaml", "volumes: [g101-3:", "volumes: [g101-4:",
     "volume g101-4 is not defined"),
    ("deploy/compose/compose.yaml", "volumes: [g101-3:", "volumes: [g101-2:",
     "volume g101-2 is shared"),
    ("deploy/compose/compose.yaml", '--listen, "0.0.0.0:7001"',
     '--listn, "0.0.0.0:7001"', "unknown flag --listn"),
    ("deploy/compose/compose.yaml", '--id, "3"', '--id, "2"',
     "are not 1..3"),
    ("deploy/compose/compose.yaml", '"101=g101-1:7101,g101-2:7101,',
     '"101=g101-2:7101,g101-1:7101,', "group 101 joined as"),
    ("deploy/compose/compose.yaml", "services:\n", "services:\n\t",
     "does not parse as YAML"),
    ("deploy/k8s/group-101.yaml", "serviceName: kv-g101",
     "serviceName: kv-g10x", "serviceName kv-g10x is no Service"),
    ("deploy/k8s/shardmaster.yaml", "clusterIP: None", "clusterIP: 10.0.0.9",
     "is not headless"),
    ("deploy/k8s/group-100.yaml", "  maxUnavailable: 1\n  selector:\n"
     "    matchLabels:\n      app.kubernetes.io/name: shardkv\n"
     "      app.kubernetes.io/instance: kv-g100\n", "  maxUnavailable: 1\n"
     "  selector:\n    matchLabels:\n      app.kubernetes.io/name: shardkv\n"
     "      app.kubernetes.io/instance: kv-g10\n",
     "PodDisruptionBudget kv-g100: selector"),
    ("deploy/k8s/group-100.yaml", "volumeClaimTemplates:",
     "volumeClaimTemplatez:", "no volumeClaimTemplates"),
    ("deploy/k8s/shardmaster.yaml", '"$((ordinal + 1))"', '"$ordinal"',
     "expected 1 (ordinal + 1)"),
    ("deploy/k8s/group-101.yaml", "kv-g101-2.kv-g101.shardkv.svc",
     "kv-g101-3.kv-g101.shardkv.svc", "kv-g101 has 3 replicas"),
    ("deploy/k8s/join-job.yaml", "shardmaster-2.shardmaster.shardkv.svc"
     ".cluster.local:7001\n", "shardmaster-2.shardmaster.shardkv.svc"
     ".cluster.local:7002\n", "port 7002 is not a port"),
    ("deploy/systemd/shardkv@.service", "--peers ${SHARDKV_PEERS}",
     "--peer ${SHARDKV_PEERS}", "unknown flag --peer"),
    ("deploy/systemd/shardkv@.service", "--data /var/lib/shardkv/group-%i",
     "--data /srv/shardkv/group-%i", "is not the StateDirectory"),
    ("deploy/systemd/shardmaster.env.example", "--shards 10", "--shards 0",
     "shardmaster refuses this command line"),
    ("deploy/systemd/shardkv.env.example", "SHARDKV_ID=1", "SHARDKV_IDX=1",
     "not set in the example env file"),
    ("deploy/systemd/shardmaster.service", "Restart=on-failure",
     "Restart=sometimes", "Restart=sometimes, expected on-failure"),
    ("deploy/systemd/shardkv@.service", "TimeoutStopSec=30s",
     "TimeoutStopSec=30 parsecs", "systemd-analyze verify: ",
     "systemd-analyze"),
    ("deploy/docker/Dockerfile", "librocksdb7.8 ", "", "librocksdb",
     "dpkg-query"),
    ("deploy/docker/shardkv-join.sh", '*"$want"*)', '*"\\"$gid\\":["*)',
     "expected 1"),
]


def self_test(src, build):
    """Each mutation on a fresh copy of deploy/ must fail with its error."""
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (rel, old, new, expect, *tool) in enumerate(MUTATIONS):
            if tool and not shutil.which(tool[0]):
                continue
            root = os.path.join(tmp, str(n))
            shutil.copytree(os.path.join(src, "deploy"),
                            os.path.join(root, "deploy"), symlinks=True)
            path = os.path.join(root, rel)
            with open(path) as f:
                text = f.read()
            if old not in text:
                bad.append(f"mutation {n}: '{old.strip()}' not in {rel} "
                           "(update MUTATIONS with the file)")
                continue
            with open(path, "w") as f:
                f.write(text.replace(old, new, 1))
            errors = Checker(root, build).check_all()
            if not any(expect in e for e in errors):
                bad.append(f"mutation {n} ({rel}: '{old.strip()}' -> "
                           f"'{new.strip()}') was not caught as '{expect}';"
                           f" errors: {errors or 'none'}")
            shutil.rmtree(root)
    return bad


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    if len(args) != 2 or any(a not in ("--no-self-test",)
                             for a in argv[1:] if a.startswith("--")):
        print(f"usage: {PROG}.py SRC_DIR BUILD_DIR [--no-self-test]",
              file=sys.stderr)
        return 2
    src, build = (os.path.abspath(a) for a in args)
    c = Checker(src, build)
    errors = c.check_all()
    for n in c.notes:
        print(f"{PROG}: note: {n}")
    if errors:
        for e in errors:
            print(f"{PROG}: FAIL {e}")
        print(f"{PROG}: {len(errors)} problem(s) in the deployment files")
        return 1
    print(f"{PROG}: {len(c.invocations)} command lines and every "
          "deployment file checked")
    if "--no-self-test" not in argv:
        bad = self_test(src, build)
        for b in bad:
            print(f"{PROG}: FAIL self-test: {b}")
        if bad:
            return 1
        print(f"{PROG}: self-test: all {len(MUTATIONS)} broken copies "
              "fail as they should")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
